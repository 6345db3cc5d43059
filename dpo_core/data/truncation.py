"""The `truncated` check, for a model: pairs whose reply a run would cut at max_length (the
prompt counted as training renders it: template, system turn, max_prompt_length)."""

from __future__ import annotations

from ..formats import CHAT_FORMAT, PromptFormat
from ..store import Store
from .datasets import get_dataset, iter_pairs
from .rendering import format_for, render_pair


def truncated_ids(store: Store, dataset: str | int, tokenizer, max_length: int, *,
                  max_prompt_length: int = 0, prompt_format: PromptFormat | None = None,
                  model_path: str | None = None) -> list[int]:
    """Ids of the live pairs that lose reply tokens at `max_length` with this tokenizer."""
    ds = get_dataset(store, dataset)
    fmt = prompt_format or _format(ds.prompt_format, model_path, tokenizer)
    return [p.id for p in iter_pairs(store, ds.id)
            if _cut(render_pair(p, fmt, tokenizer, max_length, max_prompt_length))]


def _cut(rendered) -> bool:
    return bool(rendered.chosen_cut or rendered.rejected_cut)


def _format(dataset_format: dict, model_path: str | None, tokenizer) -> PromptFormat:
    if model_path:
        return format_for(None, dataset_format, model_path, tokenizer)
    if dataset_format:
        return PromptFormat.from_dict(dataset_format)
    return CHAT_FORMAT if getattr(tokenizer, "chat_template", None) else PromptFormat()
