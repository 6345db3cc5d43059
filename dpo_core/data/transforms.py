"""Derived datasets: split, label noise, dedupe, filter, sample. Each remembers its parent (by
id and by name, so the lineage survives the parent's deletion) and its recipe."""

from __future__ import annotations

import random

from ..errors import DataError
from ..store import Store
from .browse import fts_query
from .checks import CHECKS, check_ids, contradiction_groups
from .datasets import Dataset, create_dataset, get_dataset

_COPY = ("prompt, chosen, rejected, split, source, tags, flags, note, meta_json, created, "
         "updated")


def _live_ids(store: Store, dataset_id: int, split: str | None = None) -> list[int]:
    if split is not None:
        return [r[0] for r in store.query("SELECT id FROM pairs WHERE dataset_id=? AND "
                                          "deleted=0 AND split=? ORDER BY id",
                                          (dataset_id, split))]
    return [r[0] for r in store.query("SELECT id FROM pairs WHERE dataset_id=? AND deleted=0 "
                                      "ORDER BY id", (dataset_id,))]


def _derive(store: Store, parent: Dataset, into: str | None, recipe: dict, ids: list[int],
            *, eval_ids: set[int] = frozenset(), flip_ids: set[int] = frozenset()) -> Dataset:
    """Copy `ids` of `parent` into a new dataset (optionally marking eval rows and flipping)."""
    name = into or f"{parent.name}-{recipe['op']}"
    recipe = {**recipe, "parent": parent.name}
    with store.write() as conn:
        ds = create_dataset(store, name, parent_id=parent.id, recipe=recipe,
                            prompt_format=parent.prompt_format)
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _pick(id INTEGER PRIMARY KEY, ev INT, fl INT)")
        conn.execute("DELETE FROM _pick")
        conn.executemany("INSERT INTO _pick VALUES(?,?,?)",
                         [(i, i in eval_ids, i in flip_ids) for i in ids])
        conn.execute(
            "INSERT INTO pairs(dataset_id, prompt, chosen, rejected, split, source, tags, flags,"
            " note, meta_json, created, updated, message_fields) SELECT ?, p.prompt, "
            "CASE WHEN k.fl THEN p.rejected ELSE p.chosen END, "
            "CASE WHEN k.fl THEN p.chosen ELSE p.rejected END, "
            "CASE WHEN k.ev THEN 'eval' WHEN ? THEN 'train' ELSE p.split END, p.source, p.tags, "
            "CASE WHEN k.fl THEN json_insert(p.flags, '$[#]', 'flipped') ELSE p.flags END, "
            "p.note, p.meta_json, p.created, p.updated, "
            # a flip swaps the conversation bits of chosen (2) and rejected (4) too
            "CASE WHEN k.fl THEN (p.message_fields & 1) | ((p.message_fields & 2) * 2)"
            " | ((p.message_fields & 4) / 2) ELSE p.message_fields END "
            "FROM _pick k JOIN pairs p ON p.id=k.id ORDER BY p.id", (ds.id, bool(eval_ids)))
        conn.execute("DELETE FROM _pick")
    return get_dataset(store, ds.id)


def split_dataset(store: Store, dataset: str | int, eval_size: int | float, *, seed: int = 0,
                  first: bool = False, into: str | None = None) -> Dataset:
    """Train/eval split: the last N rows eval (first=True) or a seeded random eval set.
    `eval_size` is a count (a whole number) or a fraction (a float below 1)."""
    parent = get_dataset(store, dataset)
    ids = _live_ids(store, parent.id)
    n_eval = _count(eval_size, len(ids), "--eval-size")
    if first:
        eval_ids = set(ids[len(ids) - n_eval:])
    else:
        eval_ids = set(random.Random(seed).sample(ids, n_eval))
    recipe = {"op": "split", "eval_size": eval_size, "seed": seed, "first": first}
    return _derive(store, parent, into, recipe, ids, eval_ids=eval_ids)


def parse_size(text: str | int | float, name: str = "--eval-size") -> int | float:
    """A count (`300`) or a fraction below 1 (`0.1`); `1.0` or `2.5` are refused as ambiguous
    (100% or one pair? two and a half pairs?)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    raw = str(text).strip()
    if raw.isdigit():
        return int(raw)
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{name} '{raw}' is not a number.",
                        "Give a count of pairs (e.g. 300) or a fraction below 1 (e.g. 0.1).") from None
    if not 0 < value < 1:
        whole = value >= 1 and value == int(value)
        raise DataError(f"{name} {raw} is ambiguous: a count is a whole number and a fraction is "
                        "below 1.", (f"Write {int(value)} for a count of pairs, or" if whole
                                     else "Give a whole count of pairs (e.g. 300) or") +
                        " a fraction below 1 (e.g. 0.1 for 10%).")
    return value


def _count(size: int | float, total: int, name: str) -> int:
    size = parse_size(size, name)
    n = round(size * total) if isinstance(size, float) else size
    if not 0 < n < total:
        raise DataError(f"{name} {size} gives {n} of {total} pairs; both parts must be non-empty.",
                        "Use a fraction between 0 and 1 or a count below the dataset size.")
    return n


NOISE_SPLITS = ("train", "all")


def add_label_noise(store: Store, dataset: str | int, flip: float, *, seed: int = 0,
                    into: str | None = None, splits: str = "train") -> Dataset:
    """Swap chosen/rejected on round(flip * n) seeded random pairs of the train split (flagged
    'flipped'); held-out pairs stay as they are unless `splits="all"`."""
    if not 0 <= flip <= 1:
        raise DataError(f"--flip {flip} is not a fraction.", "Use a value from 0 to 1.")
    if splits not in NOISE_SPLITS:
        raise DataError(f"splits is '{splits}'.", "Use 'train' (the default: evaluation pairs "
                        "stay clean) or 'all'.")
    parent = get_dataset(store, dataset)
    ids = _live_ids(store, parent.id)
    pool = ids if splits == "all" else _live_ids(store, parent.id, "train")
    flip_ids = set(random.Random(seed).sample(pool, round(flip * len(pool))))
    recipe = {"op": "noise", "flip": flip, "seed": seed, "splits": splits,
              "flipped": len(flip_ids), "of": len(pool)}
    return _derive(store, parent, into, recipe, ids, flip_ids=flip_ids)


def dedupe(store: Store, dataset: str | int, *, into: str | None = None) -> Dataset:
    """Drop exact repeats (keeping the first of each) and resolve contradictions: of pairs that
    prefer the same two replies both ways, the first pair of the direction most of them take is
    kept; a tie is dropped whole (no direction to keep)."""
    parent = get_dataset(store, dataset)
    repeats = set(check_ids(store, parent.id, "duplicate"))
    drop, ties = set(repeats), 0
    for group in contradiction_groups(store, parent.id):
        sides = [[i for i in group[d] if i not in repeats] for d in (0, 1)]
        if len(sides[0]) == len(sides[1]):
            drop |= set(sides[0]) | set(sides[1])
            ties += 1
            continue
        kept, lost = sorted(sides, key=len, reverse=True)
        drop |= set(kept[1:]) | set(lost)
    ids = [i for i in _live_ids(store, parent.id) if i not in drop]
    recipe = {"op": "dedupe", "dropped": len(drop), "duplicates": len(repeats),
              "contradictions_resolved": len(drop - repeats), "ties_dropped": ties}
    return _derive(store, parent, into, recipe, ids)


def filter_dataset(store: Store, dataset: str | int, *, check: str | None = None,
                   search: str | None = None, keep: bool = False,
                   into: str | None = None) -> Dataset:
    """Drop the pairs failing `check` or matching `search` (keep=True keeps only those)."""
    parent = get_dataset(store, dataset)
    if check:
        if check not in CHECKS:
            raise DataError(f"Unknown check '{check}'.", f"Use one of: {', '.join(CHECKS)}.")
        hits = set(check_ids(store, parent.id, check))
    elif search:
        hits = {r[0] for r in store.query(
            "SELECT rowid FROM pairs_fts WHERE pairs_fts MATCH ?", (fts_query(search),))}
    else:
        raise DataError("Filter needs a check or a search.", "Pass check=... or search=...")
    ids = [i for i in _live_ids(store, parent.id) if (i in hits) == keep]
    recipe = {"op": "filter", "check": check, "search": search, "keep": keep}
    return _derive(store, parent, into, recipe, ids)


def sample_dataset(store: Store, dataset: str | int, n: int, *, seed: int = 0,
                   into: str | None = None) -> Dataset:
    """A seeded random sample of n pairs (kept in their original order)."""
    parent = get_dataset(store, dataset)
    ids = _live_ids(store, parent.id)
    if not 0 < n <= len(ids):
        raise DataError(f"Cannot sample {n} of {len(ids)} pairs.", "Pick 1..size.")
    picked = sorted(random.Random(seed).sample(ids, n))
    return _derive(store, parent, into, {"op": "sample", "n": n, "seed": seed}, picked)

