"""The exact text a pair becomes for a model: prompt, chosen and rejected after the prompt
format (chat template or plain tags), with token counts and where max_prompt_length and
max_length cut (the same rendering training freezes)."""

from __future__ import annotations

import streamlit as st

from dpo_core.data.datasets import Dataset
from dpo_core.data.rendering import preview_pairs
from dpo_core.errors import DPOLabError
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC
from pages._data_common import token_model, tokenizer_for, workspace_store
from pages._widgets import ensure_routed

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()


def preview_panel(dataset: Dataset, pair_id: int) -> None:
    """Model, limits and the rendered texts of one pair (shown on demand: loading a tokenizer
    takes a moment)."""
    if not st.toggle("Show the model text", key="data_preview_on"):
        return
    cols = st.columns([2, 1, 1])
    spec = cols[0].text_input("Model", key="data_preview_model", placeholder=token_model(),
                              help=f"{DEFAULT_SPEC}, {TINY_SPEC}, run:<id>, a folder or a hub id."
                              ).strip() or token_model()
    max_length = cols[1].number_input("max_length", 8, 32768, 512, 64, key="data_preview_max")
    max_prompt = cols[2].number_input("max_prompt_length (0 = off)", 0, 32768, 256, 64,
                                      key="data_preview_max_prompt")
    try:
        fmt, (rendered,) = preview_pairs(workspace_store(), dataset.id, spec, pair_ids=[pair_id],
                                         max_length=int(max_length),
                                         max_prompt_length=int(max_prompt),
                                         tokenizer=tokenizer_for(spec))
    except DPOLabError as exc:
        st.error(exc.message + (f"\n\n**Fix:** {exc.fix}" if exc.fix else ""))
        return
    st.caption(f"Format: {fmt.label}. ✂ marks where max_length cuts a reply off.")
    for name in ("prompt", "chosen", "rejected"):
        cut = getattr(rendered, f"{name}_cut")
        st.markdown(f"**{name}** · {getattr(rendered, f'{name}_tokens')} tokens"
                    + (f" · **{cut} cut**" if cut else ""))
        st.code(rendered.marked.get(name, getattr(rendered, name)), language=None,
                wrap_lines=True)
