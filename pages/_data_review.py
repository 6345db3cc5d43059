"""The Data page's Review tab: one pair at a time, chosen vs rejected with the differing words
marked (a conversation shown turn by turn), and a verdict (keep, swap, flag, skip) with one-key
shortcuts.

The shortcuts exist only while this tab is shown (the page runs the open tab only) and never
fire while the cursor is in a text field (Streamlit ignores keys typed into inputs); a verdict
that arrives while another tab is open is refused all the same. Each verdict is one edit, said
by name, and U takes it back. Progress is the "reviewed" tag in the store: it survives the
session."""

from __future__ import annotations

import difflib
import html

import streamlit as st

from dpo_core.data.browse import page
from dpo_core.data.datasets import Dataset
from dpo_core.data.review import REVIEWED, review_pair, review_progress, undo_verdict
from dpo_core.formats import content_text
from pages._data_common import (
    COUNT_CAP,
    REVIEW,
    S,
    follow_edits,
    query,
    run,
    show_text,
    signature,
    workspace_store,
)
from pages._widgets import ensure_routed

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()

CHOSEN_MARK, REJECTED_MARK = "rgba(33, 195, 84, 0.25)", "rgba(255, 75, 75, 0.25)"  # both themes
KEYS = [("Keep", "keep", "k"), ("Swap", "swap", "s"), ("Flag", "flag", "f"), ("Skip", "skip", "j")]


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


def _review_act(verdict: str, dataset: Dataset, pair: dict) -> None:
    """Apply the verdict to the pair the reviewer saw, only while the Review tab is shown."""
    if S.get("data_tab") != REVIEW:
        S["data_msg"] = ("warning", f"A review key reached the page while the "
                                    f"{S.get('data_tab')} tab was shown; nothing was changed.")
        return
    done = run(review_pair, workspace_store(), pair["id"], verdict, seen=pair,
               dataset_id=dataset.id)
    if done is not None:
        S["data_review_after"] = pair["id"]
        S["data_review_undo"] = (done.edit_id, pair["id"]) if done.edit_id else None
        S["data_review_said"] = done.message + (" Press U to undo." if done.edit_id else "")


def _undo(dataset: Dataset) -> None:
    last = S.get("data_review_undo")
    if S.get("data_tab") != REVIEW or not last:
        return
    edit_id, pair_id = last
    if run(undo_verdict, workspace_store(), edit_id, pair_id, dataset.id) is not None:
        S["data_review_undo"], S["data_review_after"] = None, pair_id - 1
        S["data_review_said"] = f"Undid the verdict on pair {pair_id}; it is shown again."


@st.fragment
def review_tab(db, dataset: Dataset, filters: dict, total: int, mark: int | None = None) -> None:
    """One pair at a time: prompt, chosen vs rejected with differences marked, and a verdict."""
    follow_edits(db, dataset, mark)
    sig = signature(dataset, filters)
    if S.get("data_review_sig") != sig:
        S["data_review_sig"], S["data_review_after"] = sig, None
    pg = page(db, dataset.id, after=S.get("data_review_after"), limit=1, **query(filters))
    progress = review_progress(db, dataset.id, cap=100 * COUNT_CAP, **query(filters))
    done, of = progress["reviewed"], progress["total"]
    st.progress(min(1.0, done / max(of, 1)),
                text=f"{done:,} of {of:,} pairs in this filter are reviewed (tag "
                     f"'{REVIEWED}', kept in the store)")
    _said()
    if not pg.pairs:
        st.success("End of the filtered set.")
        st.button("Start again", key="data_review_restart",
                  on_click=lambda: S.update(data_review_after=None))
        _undo_button(dataset)
        return
    pair = pg.pairs[0].__dict__.copy()
    st.markdown(f"**Pair {pair['id']}** · split `{pair['split']}` · tags "
                f"{', '.join(pair['tags']) or '—'} · flags {', '.join(pair['flags']) or '—'}")
    st.markdown("**Prompt**")
    show_text(pair["prompt"], filters["search"])
    chosen_html, rejected_html = word_diff(content_text(pair["chosen"]),
                                           content_text(pair["rejected"]))
    left, right = st.columns(2)
    for col, name, marked in ((left, "chosen", chosen_html), (right, "rejected", rejected_html)):
        col.markdown(f"**{name.capitalize()}**\n\n{marked}", unsafe_allow_html=True)
        if isinstance(pair[name], list) and len(pair[name]) > 1:
            with col:
                show_text(pair[name])
    cols = st.columns(5)
    for col, (label, verdict, key) in zip(cols, KEYS, strict=False):
        col.button(f"{label} pair {pair['id']}", key=f"data_review_{verdict}", shortcut=key,
                   on_click=_review_act, args=(verdict, dataset, pair), width="stretch")
    with cols[4]:
        _undo_button(dataset)


def _undo_button(dataset: Dataset) -> None:
    last = S.get("data_review_undo")
    st.button(f"Undo on pair {last[1]}" if last else "Undo", key="data_review_undo_button",
              shortcut="u", disabled=not last, on_click=_undo, args=(dataset,), width="stretch")


def _said() -> None:
    """What the last key or click did (named), or why it was refused."""
    kind, text = S.pop("data_msg", (None, None))
    if kind:
        getattr(st, kind)(text)
    said = S.pop("data_review_said", None)
    if said:
        st.info(said)
