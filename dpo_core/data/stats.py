"""What a dataset looks like: pairs per split and source, tag and flag names, the columns its
import kept, and the lengths of a fixed sample of pairs (in words, kept by the check sync; or in
a tokenizer's tokens, on demand; a conversation counts the text of its turns)."""

from __future__ import annotations

import json

from ..formats import content_text
from ..store import Store
from .checks import sync_checks
from .datasets import row_texts
from .facets import summary_view


def dataset_summary(store: Store, dataset_id: int, lengths: bool = True) -> dict:
    """Counts per split/source, tag, flag and kept-column names, and (with `lengths`) word
    lengths of a fixed sample (data/facets.py): kept current by the check sync, never a rescan."""
    sync_checks(store, dataset_id)
    row = store.query_one("SELECT summary, sample FROM check_state WHERE dataset_id=?",
                          (dataset_id,))
    counts = json.loads(row["summary"]) if row else {}
    sample = (json.loads(row["sample"]) if row else {}) if lengths else None
    return summary_view(counts, sample)


def _texts(store: Store, ids: list[int]) -> list[dict]:
    """{id, prompt, chosen, rejected} as read text (a conversation's turns), in id order."""
    rows = store.query("SELECT id, prompt, chosen, rejected, message_fields FROM pairs WHERE id "
                       "IN (SELECT value FROM json_each(?)) ORDER BY id", (json.dumps(ids),))
    return [{"id": r["id"], **{k: content_text(v) for k, v in row_texts(r).items()}} for r in rows]


def token_lengths(store: Store, pair_ids: list[int], tokenizer) -> dict[str, list[int]]:
    """Token counts of prompt/chosen/rejected of the given pairs (no special tokens)."""
    rows = _texts(store, pair_ids)
    if not rows:
        return {}
    return {k: [len(ids) for ids in tokenizer([r[k] for r in rows], add_special_tokens=False)
                ["input_ids"]] for k in ("prompt", "chosen", "rejected")}
