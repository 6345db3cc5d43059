"""The Data page's Review tab: one pair at a time, chosen vs rejected with the differing words
marked, and a verdict (keep, swap, flag, skip) with one-key shortcuts."""

from __future__ import annotations

import difflib
import html

import streamlit as st

from dpo_core.data import edits
from dpo_core.data.browse import page
from dpo_core.data.datasets import Dataset
from pages._data_common import S, count, follow_edits, query, run, signature, workspace_store

# -- review -----------------------------------------------------------------------------------
CHOSEN_MARK, REJECTED_MARK = "rgba(33, 195, 84, 0.25)", "rgba(255, 75, 75, 0.25)"  # both themes


def word_diff(a: str, b: str) -> tuple[str, str]:
    """HTML of a and b with the words that differ highlighted (green in a, red in b; not struck
    through: the rejected text is not deleted text)."""
    wa, wb = a.split(), b.split()
    out_a, out_b = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes():
        left, right = html.escape(" ".join(wa[i1:i2])), html.escape(" ".join(wb[j1:j2]))
        if op == "equal":
            out_a.append(left)
            out_b.append(right)
        else:
            if left:
                out_a.append(f'<mark style="background:{CHOSEN_MARK}">{left}</mark>')
            if right:
                out_b.append(f'<mark style="background:{REJECTED_MARK}">{right}</mark>')
    return " ".join(out_a), " ".join(out_b)


def _review_act(action: str, pair: dict) -> None:
    """Apply the verdict to the text the annotator saw (refused if that text changed since)."""
    store_, pid = workspace_store(), pair["id"]
    current = edits.get_pair(store_, pid)
    same = all(getattr(current, f) == pair[f] for f in ("prompt", "chosen", "rejected"))
    version = current.version if same else pair["version"]
    done = True
    if action == "keep":
        done = run(edits.mark_pair, store_, pid, version, tag="reviewed", actor="review")
    elif action == "swap":
        done = run(edits.swap_pair, store_, pid, version, actor="review")
        if done is not None:
            run(edits.mark_pair, store_, pid, version + 1, tag="reviewed", actor="review")
    elif action == "flag":
        done = run(edits.mark_pair, store_, pid, version, flag="review", actor="review")
    if done is not None:
        S["data_review_after"] = pid
        S["data_reviewed"] = S.get("data_reviewed", 0) + (action != "skip")


@st.fragment
def review_tab(db, dataset: Dataset, filters: dict, total: int, mark: int | None = None) -> None:
    """One pair at a time: prompt, chosen vs rejected with differences marked, and a verdict."""
    follow_edits(db, dataset, mark)
    sig = signature(dataset, filters)
    if S.get("data_review_sig") != sig:
        S["data_review_sig"], S["data_review_after"], S["data_reviewed"] = sig, None, 0
    pg = page(db, dataset.id, after=S["data_review_after"], limit=1, **query(filters))
    total, shown = count(db, dataset, filters, total)
    done = S.get("data_reviewed", 0)
    st.progress(min(1.0, done / max(total, 1)),
                text=f"Reviewed {done:,} of {shown} pairs in this filter (this session)")
    if not pg.pairs:
        st.success("End of the filtered set.")
        st.button("Start again", key="data_review_restart",
                  on_click=lambda: S.update(data_review_after=None))
        return
    pair = pg.pairs[0].__dict__.copy()
    chosen_html, rejected_html = word_diff(pair["chosen"], pair["rejected"])
    st.markdown(f"**Pair {pair['id']}** · split `{pair['split']}` · tags "
                f"{', '.join(pair['tags']) or '—'} · flags {', '.join(pair['flags']) or '—'}")
    st.markdown(f"**Prompt**\n\n{html.escape(pair['prompt'])}")
    left, right = st.columns(2)
    left.markdown(f"**Chosen**\n\n{chosen_html}", unsafe_allow_html=True)
    right.markdown(f"**Rejected**\n\n{rejected_html}", unsafe_allow_html=True)
    cols = st.columns(4)
    for col, (label, action, key) in zip(cols, [("Keep", "keep", "k"), ("Swap", "swap", "s"),
                                                ("Flag", "flag", "f"), ("Skip", "skip", "j")], strict=True):
        col.button(label, key=f"data_review_{action}", shortcut=key,  # shows the key itself
                   on_click=_review_act, args=(action, pair), width="stretch")
    _messages_inline()


def _messages_inline() -> None:
    kind, text = S.pop("data_msg", (None, None))
    if kind == "error":
        st.error(text)
