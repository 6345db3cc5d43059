"""Derived datasets: split, label noise, dedupe, filter, sample. Each remembers parent and recipe."""

from __future__ import annotations

import random

from ..errors import DataError
from ..store import Store
from .browse import fts_query
from .checks import run_checks
from .datasets import Dataset, create_dataset, get_dataset

_COPY = ("prompt, chosen, rejected, split, source, tags, flags, note, meta_json, created, "
         "updated")


def _live_ids(store: Store, dataset_id: int) -> list[int]:
    return [r[0] for r in store.query("SELECT id FROM pairs WHERE dataset_id=? AND deleted=0 "
                                      "ORDER BY id", (dataset_id,))]


def _derive(store: Store, parent: Dataset, into: str | None, recipe: dict, ids: list[int],
            *, eval_ids: set[int] = frozenset(), flip_ids: set[int] = frozenset()) -> Dataset:
    """Copy `ids` of `parent` into a new dataset (optionally marking eval rows and flipping)."""
    name = into or f"{parent.name}-{recipe['op']}"
    with store.write() as conn:
        ds = create_dataset(store, name, parent_id=parent.id, recipe=recipe,
                            prompt_format=parent.prompt_format)
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _pick(id INTEGER PRIMARY KEY, ev INT, fl INT)")
        conn.execute("DELETE FROM _pick")
        conn.executemany("INSERT INTO _pick VALUES(?,?,?)",
                         [(i, i in eval_ids, i in flip_ids) for i in ids])
        conn.execute(
            "INSERT INTO pairs(dataset_id, prompt, chosen, rejected, split, source, tags, flags,"
            " note, meta_json, created, updated) SELECT ?, p.prompt, "
            "CASE WHEN k.fl THEN p.rejected ELSE p.chosen END, "
            "CASE WHEN k.fl THEN p.chosen ELSE p.rejected END, "
            "CASE WHEN k.ev THEN 'eval' WHEN ? THEN 'train' ELSE p.split END, p.source, p.tags, "
            "CASE WHEN k.fl THEN json_insert(p.flags, '$[#]', 'flipped') ELSE p.flags END, "
            "p.note, p.meta_json, p.created, p.updated FROM _pick k JOIN pairs p ON p.id=k.id "
            "ORDER BY p.id", (ds.id, bool(eval_ids)))
        conn.execute("DELETE FROM _pick")
    return get_dataset(store, ds.id)


def split_dataset(store: Store, dataset: str | int, eval_size: float, *, seed: int = 0,
                  first: bool = False, into: str | None = None) -> Dataset:
    """Train/eval split: the first N rows train (first=True) or a seeded random eval set."""
    parent = get_dataset(store, dataset)
    ids = _live_ids(store, parent.id)
    n_eval = _count(eval_size, len(ids), "--eval-size")
    if first:
        eval_ids = set(ids[len(ids) - n_eval:])
    else:
        eval_ids = set(random.Random(seed).sample(ids, n_eval))
    recipe = {"op": "split", "eval_size": eval_size, "seed": seed, "first": first}
    return _derive(store, parent, into, recipe, ids, eval_ids=eval_ids)


def _count(size: float, total: int, name: str) -> int:
    n = round(size * total) if 0 < size < 1 else int(size)
    if not 0 < n < total:
        raise DataError(f"{name} {size} gives {n} of {total} pairs; both parts must be non-empty.",
                        "Use a fraction between 0 and 1 or a count below the dataset size.")
    return n


def add_label_noise(store: Store, dataset: str | int, flip: float, *, seed: int = 0,
                    into: str | None = None) -> Dataset:
    """Swap chosen/rejected on round(flip * n) seeded random pairs (flagged 'flipped')."""
    if not 0 <= flip <= 1:
        raise DataError(f"--flip {flip} is not a fraction.", "Use a value from 0 to 1.")
    parent = get_dataset(store, dataset)
    ids = _live_ids(store, parent.id)
    flip_ids = set(random.Random(seed).sample(ids, round(flip * len(ids))))
    recipe = {"op": "noise", "flip": flip, "seed": seed, "flipped": len(flip_ids)}
    return _derive(store, parent, into, recipe, ids, flip_ids=flip_ids)


def dedupe(store: Store, dataset: str | int, *, into: str | None = None) -> Dataset:
    """Drop exact repeats, keeping the first of each."""
    parent = get_dataset(store, dataset)
    drop = set(run_checks(store, parent.id)["duplicate"]["ids"])
    ids = [i for i in _live_ids(store, parent.id) if i not in drop]
    return _derive(store, parent, into, {"op": "dedupe", "dropped": len(drop)}, ids)


def filter_dataset(store: Store, dataset: str | int, *, check: str | None = None,
                   search: str | None = None, keep: bool = False,
                   into: str | None = None) -> Dataset:
    """Drop the pairs failing `check` or matching `search` (keep=True keeps only those)."""
    parent = get_dataset(store, dataset)
    if check:
        results = run_checks(store, parent.id)
        if check not in results:
            raise DataError(f"Unknown check '{check}'.", f"Use one of: {', '.join(results)}.")
        hits = set(results[check]["ids"])
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

