"""Data checks that understand preference data, kept up to date incrementally.

Each check names the live pairs that fail it (table `check_hits`):
- by itself: identical, normalized_identical (same words once case, punctuation and spacing are
  set aside), empty, length_imbalance, chosen_longer (the chosen reply has more words: the
  length bias DPO learns when it is common);
- with others: duplicate (the same texts as an earlier pair), near_duplicate (MinHash similar
  to an earlier pair), contradiction (the same prompt and replies preferred both ways: A>B and
  B>A), leakage (the same prompt in two splits, e.g. train and eval), speaker_tag (a reply
  without the speaker tag, like *CHI:, that the replies of the dataset, or of a reference
  dataset, carry);
- on demand, for a model: truncated (the reply would be cut at a run's max_length).

Incremental: each pair's keys (check_keys.py) are stored (`pair_keys`, `pair_bands`). A sync
reads the pairs changed since the last one (the `updated` index), replaces their keys and
re-decides only the groups they left or joined, so an edit costs the same at 1k or 100k pairs.
The first sync of a dataset (or one with no state) computes everything.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from contextlib import contextmanager

import numpy as np

from ..store import Store, dumps
from .check_groups import band_blob
from .check_keys import (
    NEAR,
    SIGNATURE_DTYPE,
    PairKeys,
    minhashes,
    normalize,
    pair_keys,
)
from .datasets import get_dataset, row_texts
from .facets import SAMPLE, full_summary, pair_facets, update_counts, update_sample

CHECKS = ("identical", "normalized_identical", "empty", "duplicate", "near_duplicate",
          "contradiction", "leakage", "speaker_tag", "length_imbalance", "chosen_longer")
STATISTICS = ("chosen_longer",)  # a property to watch across the set, not a defect of a pair
ON_DEMAND = ("truncated",)
STATE_VERSION = 2  # a state of another version is recomputed from scratch
BATCH = 5000


# -- reading ---------------------------------------------------------------------------------
def check_counts(store: Store, dataset: str | int) -> dict[str, int]:
    """{check: failing live pairs} of every stored check, brought up to date first."""
    ds = get_dataset(store, dataset)
    sync_checks(store, ds.id)
    state = json.loads(store.scalar("SELECT state FROM check_state WHERE dataset_id=?",
                                    (ds.id,)) or "{}")
    found = state.get("counts", {})  # kept by every sync: reading them costs nothing
    return {name: found.get(name, 0) for name in CHECKS}


def identical_warning(store: Store, dataset: str | int) -> str | None:
    """A warning before training on a dataset that holds pairs whose replies are the same: they
    teach nothing (zero margin whatever the model) and pull the loss towards log 2."""
    ds = get_dataset(store, dataset)
    counts = check_counts(store, ds.id)
    n = counts["normalized_identical"]  # exact copies are among them
    if not n:
        return None
    return (f"{n} pair(s) of {ds.name} have the same chosen and rejected reply (exactly or once "
            "case, punctuation and spacing are set aside): they teach nothing and distort the "
            f"loss. Fix: python -m dpo_core data filter {ds.name} --check "
            "normalized_identical --into NEW_NAME, and train on NEW_NAME.")


def check_ids(store: Store, dataset: str | int, name: str, limit: int | None = None) -> list[int]:
    """Ids of the live pairs failing a stored check, in id order."""
    ds = get_dataset(store, dataset)
    _known(name)
    sync_checks(store, ds.id)
    rows = store.query("SELECT pair_id FROM check_hits WHERE dataset_id=? AND name=? ORDER BY "
                       "pair_id LIMIT ?", (ds.id, name, -1 if limit is None else limit))
    return [r[0] for r in rows]


def run_checks(store: Store, dataset: str | int, *, max_tokens: int | None = None,
               tokenizer=None, reference: str | int | None = None, max_prompt_length: int = 0,
               model_path: str | None = None, statistics: bool = False) -> dict[str, dict]:
    """{check: {"count": n, "ids": [...]}} for every check (the statistics, chosen_longer, with
    `statistics`); `truncated` too with a tokenizer and max_tokens (a run's max_length);
    `reference` takes the expected speaker tag from another dataset."""
    ds = get_dataset(store, dataset)
    results = {name: {"count": n, "ids": check_ids(store, ds.id, name) if n else []}
               for name, n in check_counts(store, ds.id).items()
               if statistics or name not in STATISTICS}
    if reference is not None:
        ids = _speaker_tag_against(store, ds.id, get_dataset(store, reference).id)
        results["speaker_tag"] = {"count": len(ids), "ids": ids}
    if tokenizer is not None and max_tokens:
        from .truncation import truncated_ids

        ids = truncated_ids(store, ds.id, tokenizer, max_tokens, model_path=model_path,
                            max_prompt_length=max_prompt_length)
        results["truncated"] = {"count": len(ids), "ids": ids}
    return results


def length_bias(store: Store, dataset: str | int) -> dict:
    """How often the chosen reply is the longer one (in words): DPO learns length when it is."""
    ds = get_dataset(store, dataset)
    counts = check_counts(store, ds.id)
    total = store.scalar("SELECT COUNT(*) FROM pairs WHERE dataset_id=? AND deleted=0", (ds.id,))
    longer = counts["chosen_longer"]
    return {"pairs": total, "chosen_longer": longer, "share": longer / total if total else 0.0}


def contradiction_groups(store: Store, dataset_id: int) -> list[dict]:
    """Groups of pairs preferring the same two replies both ways: {direction: [pair ids]}."""
    sync_checks(store, dataset_id)
    rows = store.query("SELECT k.pair_key, k.direction, k.pair_id FROM check_hits h JOIN "
                       "pair_keys k ON k.pair_id=h.pair_id WHERE h.dataset_id=? AND "
                       "h.name='contradiction' ORDER BY k.pair_id", (dataset_id,))
    groups: dict[str, dict[int, list[int]]] = defaultdict(lambda: {0: [], 1: []})
    for r in rows:
        groups[r["pair_key"]][r["direction"]].append(r["pair_id"])
    return list(groups.values())


def _known(name: str) -> None:
    from ..errors import DataError

    if name not in CHECKS:
        raise DataError(f"Unknown check '{name}'.", f"Use one of: {', '.join(CHECKS)} (and "
                        "truncated, which needs --model and --max-length).")


# -- bringing the stored results up to date ------------------------------------------------
def checked_before(store: Store, dataset_id: int) -> bool:
    """Whether the dataset's checks were computed before (else the next read computes them
    all, which takes a while on a large dataset: a page shows a spinner)."""
    row = store.query_one("SELECT state FROM check_state WHERE dataset_id=?", (dataset_id,))
    return bool(row) and json.loads(row[0]).get("v") == STATE_VERSION


def sync_checks(store: Store, dataset_id: int) -> None:
    """Re-decide the checks of the pairs changed since the last sync (all, the first time)."""
    row = store.query_one("SELECT synced, state FROM check_state WHERE dataset_id=?",
                          (dataset_id,))
    state = json.loads(row["state"]) if row else None
    if state is None or state.get("v") != STATE_VERSION:
        _full_sync(store, dataset_id)
        return
    changed = store.query("SELECT * FROM pairs WHERE dataset_id=? AND updated>? ORDER BY id",
                          (dataset_id, row["synced"]))
    if changed:
        _incremental_sync(store, dataset_id, changed, state, row["synced"])


def _keys_of(rows) -> list[PairKeys]:
    """Keys of the live rows (the MinHash signatures computed in one bulk call)."""
    live = [r for r in rows if not r["deleted"]]
    texts = [row_texts(r) for r in live]
    normalised = [tuple(normalize(t[k]) for k in ("prompt", "chosen", "rejected")) for t in texts]
    signatures = minhashes(normalised)
    keys = [pair_keys(r["id"], r["split"], t["prompt"], t["chosen"], t["rejected"], n, sig)
            for r, t, n, sig in zip(live, texts, normalised, signatures, strict=True)]
    for k, r, t in zip(keys, live, texts, strict=True):
        k.facets = pair_facets(r, t)
    return keys


def _full_sync(store: Store, dataset_id: int) -> None:
    keys, synced, last = [], 0.0, 0
    while rows := store.query("SELECT * FROM pairs WHERE dataset_id=? AND id>? ORDER BY id "
                              "LIMIT ?", (dataset_id, last, BATCH)):
        keys += _keys_of(rows)
        synced = max(synced, max(r["updated"] for r in rows))
        last = rows[-1]["id"]
    hits = _all_hits(keys)
    tags = _tag_counts(keys)
    expected = _expected_tag(store, dataset_id, keys, tags)
    hits += [(k.pair_id, "speaker_tag") for k in keys if _off_tag(k, expected)]
    with store.write() as conn, _big_cache(conn):
        for table in ("pair_keys", "pair_bands", "check_hits", "check_state"):
            conn.execute(f"DELETE FROM {table} WHERE dataset_id=?", (dataset_id,))
        _insert_keys(conn, dataset_id, keys)
        hits = sorted({(dataset_id, n, p) for p, n in hits})
        conn.executemany("INSERT INTO check_hits(dataset_id, name, pair_id) VALUES(?,?,?)",
                         hits)
        counts = dict(Counter(n for _, n, _ in hits))
        _save_state(conn, dataset_id, synced, {"v": STATE_VERSION, "tags": tags,
                                               "expected": expected, "counts": counts},
                    *full_summary(keys))


def _all_hits(keys: list[PairKeys]) -> list[tuple[int, str]]:
    """(pair id, check) of every failure but speaker tags, computed from scratch."""
    hits = [(k.pair_id, name) for k in keys for name in k.fails]
    by_exact, by_pair, by_prompt = defaultdict(list), defaultdict(list), defaultdict(list)
    for k in keys:
        by_exact[k.exact].append(k)
        if k.pair_key is not None:
            by_pair[k.pair_key].append(k)
        by_prompt[k.prompt_key].append(k)
    hits += [(k.pair_id, "duplicate") for group in by_exact.values() for k in group[1:]]
    hits += [(k.pair_id, "contradiction") for group in by_pair.values()
             if len({k.direction for k in group}) == 2 for k in group]
    hits += [(k.pair_id, "leakage") for group in by_prompt.values()
             if len({k.split for k in group}) > 1 for k in group]
    return hits + _near_duplicate_hits(keys, by_exact)


def _near_duplicate_hits(keys: list[PairKeys], by_exact: dict) -> list[tuple[int, str]]:
    """Pairs like an earlier pair with other text: only bands two pairs share are looked at
    (found with numpy, as most bands of most pairs are their own)."""
    if not keys:
        return []
    table = np.array([k.bands for k in keys], dtype=np.int64)  # pairs x bands, in id order
    signatures = np.stack([np.frombuffer(k.signature, dtype=SIGNATURE_DTYPE) for k in keys])
    exact = np.array([k.exact for k in keys], dtype=np.int64)
    candidates: dict[int, set[int]] = defaultdict(set)  # row -> earlier rows sharing a band
    for column in table.T:
        _, inverse, counts = np.unique(column, return_inverse=True, return_counts=True)
        groups = defaultdict(list)
        for row in np.flatnonzero(counts[inverse] > 1).tolist():
            groups[inverse[row]].append(row)
        for rows in groups.values():
            for i in range(1, len(rows)):
                candidates[rows[i]].update(rows[:i])
    hits = []
    for row, earlier in candidates.items():
        k = keys[row]
        if by_exact[k.exact][0] is not k:
            continue  # a repeat: a duplicate, not a near-duplicate
        others = np.fromiter(earlier, dtype=np.int64, count=len(earlier))
        others = others[exact[others] != k.exact]
        similar = (signatures[others] == signatures[row]).mean(axis=1) >= NEAR
        if similar.any():
            hits.append((k.pair_id, "near_duplicate"))
    return hits


@contextmanager
def _big_cache(conn, kib: int = 256 * 1024):
    """A larger page cache while the key indexes are filled (a third faster at 100k pairs)."""
    before = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size={-kib}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size={before}")


def _insert_keys(conn, dataset_id: int, keys: list[PairKeys]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO pair_keys(pair_id, dataset_id, split, exact, pair_key, direction,"
        " prompt_key, tag_chosen, tag_rejected, signature, bands, facets) "
        "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
        [(k.pair_id, dataset_id, k.split, k.exact, k.pair_key, k.direction, k.prompt_key,
          k.tag_chosen, k.tag_rejected, k.signature, band_blob(k.bands), dumps(k.facets))
         for k in keys])
    if not keys:
        return
    bands = np.array([k.bands for k in keys], dtype=np.int64).ravel()
    ids = np.repeat(np.array([k.pair_id for k in keys], dtype=np.int64), len(keys[0].bands))
    order = np.lexsort((ids, bands))  # in primary-key order: the B-tree fills left to right
    conn.executemany("INSERT OR IGNORE INTO pair_bands(dataset_id, band, pair_id) VALUES(?,?,?)",
                     zip([dataset_id] * len(order), bands[order].tolist(), ids[order].tolist(),
                         strict=True))


def _save_state(conn, dataset_id: int, synced: float, state: dict, summary: dict | None,
                sample: dict | None) -> None:
    """The sync's state; the summary counts and the length sample (facets.py) only when they
    changed (the sample is the larger part, and most edits leave it as it is)."""
    conn.execute("INSERT INTO check_state(dataset_id, synced, state) VALUES(?,?,?) ON CONFLICT"
                 "(dataset_id) DO UPDATE SET synced=max(synced, excluded.synced), "
                 "state=excluded.state", (dataset_id, synced, dumps(state)))
    for column, value in (("summary", summary), ("sample", sample)):
        if value is not None:
            conn.execute(f"UPDATE check_state SET {column}=? WHERE dataset_id=?",
                         (dumps(value), dataset_id))


def _summary_changes(conn, dataset_id: int, groups, new) -> tuple[dict | None, dict | None]:
    """(counts, sample) after a sync, each None when it did not change."""
    summary = json.loads(conn.execute("SELECT summary FROM check_state WHERE dataset_id=?",
                                      (dataset_id,)).fetchone()[0])
    counts = update_counts(summary, groups.old_facets, new)
    # does the sample change? SQLite reads its JSON (in C) to tell, so most edits never parse it
    touches, size = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM json_each(sample) WHERE key IN (SELECT CAST(value AS TEXT) "
        "FROM json_each(?))), (SELECT COUNT(*) FROM json_each(sample)) FROM check_state WHERE "
        "dataset_id=?", (json.dumps(sorted(groups.changed)), dataset_id)).fetchone()
    sample = None
    if touches or size < SAMPLE:
        before = json.loads(conn.execute("SELECT sample FROM check_state WHERE dataset_id=?",
                                         (dataset_id,)).fetchone()[0])
        sample = update_sample(before, groups.old_facets, new)
    return (counts if counts != summary else None), sample


# -- speaker tags ----------------------------------------------------------------------------
def _tag_counts(keys) -> dict[str, int]:
    counts = Counter()
    for k in keys:
        counts[k.tag_chosen] += 1
        counts[k.tag_rejected] += 1
    return dict(counts)


def _majority(tags: dict[str, int]) -> str:
    live = {t: n for t, n in tags.items() if n > 0}
    return max(live, key=lambda t: (live[t], t)) if live else ""


def _expected_tag(store: Store, dataset_id: int, keys, tags: dict[str, int]) -> str:
    """The tag replies should start with: the most common one; for a set whose replies carry
    none, the tag of another dataset holding our prompts with tags (a set that lost them)."""
    tag = _majority(tags)
    if tag or not keys:
        return tag
    from .speaker_tags import reference_tag

    return reference_tag(store, dataset_id)


def _off_tag(k, expected: str) -> bool:
    return bool(expected) and (k.tag_chosen != expected or k.tag_rejected != expected)


def _speaker_tag_against(store: Store, dataset_id: int, reference_id: int) -> list[int]:
    """Pairs with a reply that lacks the tag the reference dataset's replies carry."""
    from .speaker_tags import majority_tag

    expected = majority_tag(store, reference_id)
    if not expected:
        return []
    sync_checks(store, dataset_id)
    rows = store.query("SELECT pair_id, tag_chosen, tag_rejected FROM pair_keys WHERE "
                       "dataset_id=? ORDER BY pair_id", (dataset_id,))
    return [r["pair_id"] for r in rows
            if r["tag_chosen"] != expected or r["tag_rejected"] != expected]


# -- incremental -------------------------------------------------------------------------------
def _incremental_sync(store: Store, dataset_id: int, changed, state: dict,
                      synced: float) -> None:
    from .check_groups import Groups

    new = _keys_of(changed)
    with store.write() as conn:
        groups = Groups(conn, dataset_id)
        groups.leave([r["id"] for r in changed])
        _insert_keys(conn, dataset_id, new)
        groups.join(new)
        tags = state.get("tags", {})
        for key, delta in groups.tag_changes(new).items():
            tags[key] = tags.get(key, 0) + delta
        expected = _majority(tags) or state.get("expected", "")
        if expected != state.get("expected", ""):
            groups.all_speaker_tags(expected)
        else:
            groups.speaker_tags([k.pair_id for k in new], expected)
        groups.redecide()
        counts = Counter(state.get("counts", {}))
        counts.update(groups.delta)
        _save_state(conn, dataset_id, max(r["updated"] for r in changed) or synced,
                    {**state, "tags": tags, "expected": expected, "counts": dict(counts)},
                    *_summary_changes(conn, dataset_id, groups, new))
