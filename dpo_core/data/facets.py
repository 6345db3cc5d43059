"""What a dataset summary counts, kept current by the check sync (data/checks.py) so a summary
never rescans the dataset: live pairs per split and source, tag, flag and kept-column names, and
the word lengths of a fixed sample of pairs (every pair below SAMPLE pairs).

A pair's facets are stored with its check keys; a sync takes the changed pairs' old facets out
of the counts and puts their new ones in.
"""

from __future__ import annotations

import random
from collections import Counter

from ..formats import content_text

SAMPLE = 5000  # pairs whose lengths are charted
KINDS = ("splits", "sources", "tags", "flags", "columns")


def pair_facets(row, texts: dict) -> dict:
    """The facets of one pairs row (texts: its prompt/chosen/rejected as read)."""
    import json

    meta = json.loads(row["meta_json"] or "{}")
    columns = meta.get("columns") if isinstance(meta, dict) else None
    return {"splits": [row["split"]], "sources": [row["source"] or ""],
            "tags": json.loads(row["tags"] or "[]"), "flags": json.loads(row["flags"] or "[]"),
            "columns": list(columns) if isinstance(columns, dict) else [],
            "lengths": [len(content_text(texts[k]).split())
                        for k in ("prompt", "chosen", "rejected")]}


def full_summary(keys) -> tuple[dict, dict]:
    """(counts, sample) of a dataset from all its live pairs' keys (in id order): the counts of
    each facet, and {pair id: word lengths} of the sampled pairs."""
    counts = {kind: Counter() for kind in KINDS}
    for k in keys:
        for kind in KINDS:
            counts[kind].update(k.facets[kind])
    picked = random.Random(0).sample(range(len(keys)), min(len(keys), SAMPLE))
    sample = {str(keys[i].pair_id): keys[i].facets["lengths"] for i in sorted(picked)}
    return {kind: dict(c) for kind, c in counts.items()}, sample


def update_counts(counts: dict, old: dict[int, dict], new) -> dict:
    """The facet counts after some pairs changed: `old` {pair id: facets before} (of the pairs
    that were live), `new` the keys of the changed pairs that are live now."""
    moved = {kind: Counter(counts.get(kind, {})) for kind in KINDS}
    for facets in old.values():
        for kind in KINDS:
            moved[kind].subtract(facets[kind])
    for k in new:
        for kind in KINDS:
            moved[kind].update(k.facets[kind])
    return {kind: {n: c for n, c in moved[kind].items() if c > 0} for kind in KINDS}


def update_sample(sample: dict, old: dict[int, dict], new) -> dict:
    """The sample after some pairs changed: a sampled pair keeps its place (with its new
    lengths) while live; a new pair joins while there is room."""
    out = dict(sample)
    for pair_id in old:
        out.pop(str(pair_id), None)
    for k in new:
        if str(k.pair_id) in sample or len(out) < SAMPLE:
            out[str(k.pair_id)] = k.facets["lengths"]
    return out


def summary_view(counts: dict, sample: dict | None = None) -> dict:
    """The summary as the Data page shows it (lengths only when the sample is given)."""
    sources = counts.get("sources", {})
    view = {"total": sum(counts.get("splits", {}).values()),
            "splits": dict(sorted(counts.get("splits", {}).items())),
            "sources": {(s or "(none)"): n for s, n in sorted(sources.items())},
            "raw_sources": sorted(s for s in sources if s),
            "tags": sorted(counts.get("tags", {})), "flags": sorted(counts.get("flags", {})),
            "columns": sorted(counts.get("columns", {}))}
    if sample is not None:
        ids = sorted(sample, key=int)
        view["sample_ids"] = [int(i) for i in ids]
        view["lengths"] = {k: [sample[i][n] for i in ids]
                           for n, k in enumerate(("prompt", "chosen", "rejected"))}
    return view
