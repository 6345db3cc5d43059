"""Data checks: each returns the ids of the live pairs that fail it, so a page can filter on them."""

from __future__ import annotations

import re
from collections import Counter

from ..formats import leading_tag
from ..store import Store
from .datasets import get_dataset

CHECKS = ("identical", "empty", "duplicate", "swapped", "speaker_tag", "length_imbalance",
          "too_long")
_SQL = {
    "identical": "chosen=rejected",
    "empty": "trim(prompt)='' OR trim(chosen)='' OR trim(rejected)=''",
}


def run_checks(store: Store, dataset: str | int, *, imbalance: float = 4.0,
               max_tokens: int | None = None, tokenizer=None,
               reference: str | int | None = None) -> dict[str, dict]:
    """{check: {"count": n, "ids": [...]}} for every check (too_long only with a tokenizer)."""
    ds = get_dataset(store, dataset)
    results = {name: _ids(store, ds.id, sql) for name, sql in _SQL.items()}
    rows = store.query("SELECT id, prompt, chosen, rejected FROM pairs WHERE dataset_id=? AND "
                       "deleted=0 ORDER BY id", (ds.id,))
    results["duplicate"], results["swapped"] = _duplicates(rows)
    results["speaker_tag"] = _speaker_tag(store, ds.id, rows, reference)
    results["length_imbalance"] = [
        r["id"] for r in rows
        if max(_words(r["chosen"]), _words(r["rejected"])) >
        imbalance * max(1, min(_words(r["chosen"]), _words(r["rejected"])))]
    if tokenizer is not None and max_tokens:
        results["too_long"] = _too_long(rows, tokenizer, max_tokens)
    return {name: {"count": len(ids), "ids": ids} for name, ids in results.items()}


def _ids(store: Store, dataset_id: int, condition: str) -> list[int]:
    rows = store.query(f"SELECT id FROM pairs WHERE dataset_id=? AND deleted=0 AND "
                       f"({condition}) ORDER BY id", (dataset_id,))
    return [r[0] for r in rows]


def _words(text: str) -> int:
    return len(text.split())


def _duplicates(rows) -> tuple[list[int], list[int]]:
    """Exact repeats (all but the first) and pairs whose swapped twin also exists."""
    seen: dict[tuple, int] = {}
    duplicate = []
    for r in rows:
        key = (r["prompt"], r["chosen"], r["rejected"])
        if key in seen:
            duplicate.append(r["id"])
        else:
            seen[key] = r["id"]
    swapped = [r["id"] for r in rows if (r["prompt"], r["rejected"], r["chosen"]) in seen
               and r["chosen"] != r["rejected"]]
    return duplicate, swapped


def _speaker_tag(store: Store, dataset_id: int, rows, reference) -> list[int]:
    """Rows whose chosen lacks the speaker tag (like *CHI:) that most rows, or the reference
    dataset, carry. Without a reference, another dataset whose tagged prompts match ours
    (tags removed) serves as one: that catches a whole set that lost its tags."""
    tags = Counter(leading_tag(r["chosen"]) for r in rows)
    expected, count = tags.most_common(1)[0] if tags else (None, 0)
    if expected is None:
        ref_id = get_dataset(store, reference).id if reference is not None else \
            _find_reference(store, dataset_id, rows)
        if ref_id is None:
            return []
        ref = store.query("SELECT chosen FROM pairs WHERE dataset_id=? AND deleted=0 LIMIT 1000",
                          (ref_id,))
        ref_tags = Counter(leading_tag(r[0]) for r in ref).most_common(1)
        expected = ref_tags[0][0] if ref_tags else None
        if expected is None:
            return []
    return [r["id"] for r in rows if leading_tag(r["chosen"]) != expected]


def _find_reference(store: Store, dataset_id: int, rows) -> int | None:
    """Another dataset holding our first prompts with a speaker tag in front."""
    for r in rows[:20]:
        hit = store.query_one(
            "SELECT dataset_id FROM pairs WHERE dataset_id!=? AND deleted=0 AND "
            "id IN (SELECT rowid FROM pairs_fts WHERE pairs_fts MATCH ?) AND prompt LIKE ? "
            "LIMIT 1", (dataset_id, _phrase(r["prompt"]), "*%: " + r["prompt"]))
        if hit:
            return hit[0]
    return None


def _phrase(text: str) -> str:
    return 'prompt : "' + " ".join(re.findall(r"\w+", text)).replace('"', "") + '"'


def _too_long(rows, tokenizer, max_tokens: int) -> list[int]:
    out = []
    for r in rows:
        n = len(tokenizer(r["prompt"] + " " + max(r["chosen"], r["rejected"], key=len))
                ["input_ids"])
        if n > max_tokens:
            out.append(r["id"])
    return out
