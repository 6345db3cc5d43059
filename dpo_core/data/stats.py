"""What a dataset looks like: pairs per split and source, tag and flag names, and the lengths of
a fixed sample of pairs (in words, or in a tokenizer's tokens)."""

from __future__ import annotations

import json
import random
from collections import Counter

from ..store import Store

SAMPLE = 5000  # pairs whose lengths are charted


def dataset_summary(store: Store, dataset_id: int, sample: int = SAMPLE) -> dict:
    """Counts per split/source, tag and flag names, and word lengths of a seeded sample."""
    rows = store.query("SELECT id, split, source, prompt, chosen, rejected FROM pairs "
                       "WHERE dataset_id=? AND deleted=0", (dataset_id,))
    names = {col: sorted(r[0] for r in store.query(
        f"SELECT DISTINCT j.value FROM pairs p, json_each(p.{col}) j "
        "WHERE p.dataset_id=? AND p.deleted=0", (dataset_id,))) for col in ("tags", "flags")}
    picked = random.Random(0).sample(list(rows), min(len(rows), sample))
    return {"sample_ids": [r["id"] for r in picked], "total": len(rows),
            "splits": dict(Counter(r["split"] for r in rows)),
            "sources": dict(Counter(r["source"] or "(none)" for r in rows)),
            "raw_sources": sorted({r["source"] for r in rows if r["source"]}),
            "tags": names["tags"], "flags": names["flags"],
            "lengths": {k: [len(r[k].split()) for r in picked]
                        for k in ("prompt", "chosen", "rejected")}}


def token_lengths(store: Store, pair_ids: list[int], tokenizer) -> dict[str, list[int]]:
    """Token counts of prompt/chosen/rejected of the given pairs (no special tokens)."""
    rows = store.query(
        "SELECT prompt, chosen, rejected FROM pairs WHERE id IN (SELECT value FROM json_each(?))"
        " ORDER BY id", (json.dumps(pair_ids),))
    if not rows:
        return {}
    return {k: [len(ids) for ids in tokenizer([r[k] for r in rows], add_special_tokens=False)
                ["input_ids"]] for k in ("prompt", "chosen", "rejected")}
