"""The speaker tag replies of a dataset should carry (`*CHI:` in CHILDES-style data): its most
common one, or, for a set whose replies lost their tags, the tag of another dataset holding the
same prompts with tags (the synthetic CHILDES set next to the real one)."""

from __future__ import annotations

import re
from collections import Counter

from ..formats import leading_tag
from ..store import Store
from .datasets import row_texts

SAMPLE = 1000  # replies counted for a reference dataset's tag
PROBES = 20  # prompts looked up in other datasets


def majority_tag(store: Store, dataset_id: int) -> str:
    """The most common leading tag of a dataset's replies ('' when most carry none)."""
    rows = store.query("SELECT chosen, rejected, message_fields, prompt FROM pairs WHERE "
                       "dataset_id=? AND deleted=0 LIMIT ?", (dataset_id, SAMPLE))
    counts = Counter()
    for r in rows:
        texts = row_texts(r)
        counts.update(leading_tag(texts[k]) or "" for k in ("chosen", "rejected"))
    counts = {t: n for t, n in counts.items() if t}
    return max(counts, key=lambda t: (counts[t], t)) if counts else ""


def reference_tag(store: Store, dataset_id: int) -> str:
    """The tag of another dataset whose tagged prompts match ours with the tags removed."""
    rows = store.query("SELECT prompt FROM pairs WHERE dataset_id=? AND deleted=0 AND "
                       "message_fields & 1 = 0 ORDER BY id LIMIT ?", (dataset_id, PROBES))
    for r in rows:
        words = re.findall(r"\w+", r["prompt"])
        if not words:
            continue
        hit = store.query_one(
            "SELECT dataset_id FROM pairs WHERE dataset_id!=? AND deleted=0 AND id IN (SELECT "
            "rowid FROM pairs_fts WHERE pairs_fts MATCH ?) AND prompt LIKE ? LIMIT 1",
            (dataset_id, 'prompt : "' + " ".join(words) + '"', "*%: " + r["prompt"]))
        if hit:
            return majority_tag(store, hit[0])
    return ""
