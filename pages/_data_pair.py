"""The Browse tab's picked pair: shown as what it is (a conversation turn by turn), its actions,
tags, flags and note, the conversation editor, its model text and its history.

Every action names the pair it acts on and carries the dataset and pair it was drawn for: it is
refused when the pair selector shows another pair by the time it runs (a stale selector after a
dataset switch deleted a pair nobody saw), and the library refuses a pair of another dataset.
The selector is keyed by the dataset's id, so a dataset switch starts a fresh one.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dpo_core.data import edits
from dpo_core.data.datasets import Dataset
from pages._data_common import S, run, show_text, workspace_store
from pages._data_preview import preview_panel
from pages._widgets import ensure_routed

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()


def selector_key(dataset_id: int) -> str:
    return f"data_row_{dataset_id}"


def pair_panel(dataset: Dataset, pairs: list[dict], search: str | None = None) -> None:
    """The selector, then the picked pair: its texts (search hits marked), actions, editors,
    model text, history."""
    by_id = {p["id"]: p for p in pairs}
    key = selector_key(dataset.id)
    if S.get(key) not in by_id:
        S[key] = next(iter(by_id))
    pid = st.selectbox("Pair", list(by_id), key=key,
                       format_func=lambda i: f"{i}: {_label(by_id[i]['prompt'])}")
    p = by_id[pid]
    with st.container(border=True):
        st.markdown(f"**Pair {pid}** · split `{p['split']}` · version {p['version']}")
        cols = st.columns(3)
        for col, name in zip(cols, ("prompt", "chosen", "rejected"), strict=True):
            with col:
                st.markdown(f"**{name.capitalize()}**")
                show_text(p[name], search)
        if p["meta"].get("columns"):
            st.caption("Columns kept from the import")
            st.json(p["meta"]["columns"], expanded=False)
    _actions(dataset, p)
    if any(isinstance(p[f], list) for f in ("prompt", "chosen", "rejected")):
        with st.expander(f"Edit conversation of pair {pid}"):
            _conversation_editor(dataset, p)
    with st.expander(f"Model text of pair {pid} (what training sees)"):
        preview_panel(dataset, pid)
    with st.expander(f"History of pair {pid}"):
        rows = edits.history(workspace_store(), pid)
        if rows:
            st.dataframe(pd.DataFrame([{**r, "at": _local_time(r["at"]),
                                        "before": str(r["before"]), "after": str(r["after"])}
                                       for r in rows]), hide_index=True, width="stretch")
        else:
            st.caption("No edits yet.")


def _label(value) -> str:
    text = value if isinstance(value, str) else " / ".join(m["content"] for m in value)
    return text[:70]


def _actions(dataset: Dataset, p: dict) -> None:
    pid, version = p["id"], p["version"]
    cols = st.columns(6)
    cols[0].button(f"Swap pair {pid}", key="data_swap", on_click=_act,
                   args=("swap", dataset, pid, version), help="Exchange chosen and rejected.")
    if p["deleted"]:
        cols[1].button(f"Restore pair {pid}", key="data_restore", on_click=_act,
                       args=("restore", dataset, pid, version))
    else:
        cols[1].button(f"Delete pair {pid}", key="data_delete", on_click=_act,
                       args=("delete", dataset, pid, version))
    # Forms: clicking the button sends what was typed with the click (no Enter needed).
    for col, field in ((cols[2], "tag"), (cols[3], "flag")):
        with col.form(f"data_{field}_form", clear_on_submit=True, border=False):
            st.text_input(f"Add {field}", key=f"data_new_{field}")
            st.form_submit_button(f"Add {field}", key=f"data_add_{field}", on_click=_mark,
                                  args=(dataset, p, field, f"data_new_{field}"))
    with cols[4].form("data_note_form", border=False):
        note_key = f"data_note_{pid}_{version}"  # a new version shows the note it saved
        st.text_input("Note", value=p["note"], key=note_key)
        st.form_submit_button("Save note", key="data_save_note", on_click=_mark,
                              args=(dataset, p, "note", note_key))


ACTIONS = {"swap": (edits.swap_pair, "Swapped chosen and rejected of pair {}."),
           "delete": (edits.delete_pair, "Deleted pair {}."),
           "restore": (edits.restore_pair, "Restored pair {}.")}


def shown_is(dataset: Dataset, pid: int) -> bool:
    """Whether the selector still shows the pair an action was drawn for; says so if not."""
    shown = S.get(selector_key(dataset.id))
    if shown == pid:
        return True
    S["data_msg"] = ("error", f"Nothing was done: the button was for pair {pid}, but the pair "
                              f"selector shows {shown if shown is not None else 'no pair'}. "
                              "Pick the pair again and repeat the action.")
    return False


def _act(action: str, dataset: Dataset, pid: int, version: int) -> None:
    if shown_is(dataset, pid):
        fn, done = ACTIONS[action]
        run(fn, workspace_store(), pid, version, actor="data page", dataset_id=dataset.id,
            ok=done.format(pid))


def _mark(dataset: Dataset, pair: dict, field: str, key: str) -> None:
    """Add the tag/flag or save the note typed in the box `key` (read when the button is hit)."""
    if not shown_is(dataset, pair["id"]):
        return
    value = S.get(key) or ""
    if field != "note":
        value = value.strip()
        if not value:
            S["data_msg"] = ("error", f"Type a {field} in the box first, then press Add {field}.")
            return
    done = {"tag": f"Added tag '{value}' to", "flag": f"Added flag '{value}' to",
            "note": "Saved note on"}[field]
    run(edits.mark_pair, workspace_store(), pair["id"], pair["version"], **{field: value},
        actor="data page", dataset_id=dataset.id, ok=f"{done} pair {pair['id']}.")


def _conversation_editor(dataset: Dataset, p: dict) -> None:
    """One box per turn of each conversation; Save writes the turns back as message lists."""
    base = f"data_conv_{p['id']}_{p['version']}"
    with st.form(f"{base}_form", border=False):
        for name in ("prompt", "chosen", "rejected"):
            if isinstance(p[name], list):
                for i, message in enumerate(p[name]):
                    st.text_area(f"{name} · turn {i + 1} · {message['role']}",
                                 value=message["content"], key=f"{base}_{name}_{i}")
        st.form_submit_button(f"Save conversation of pair {p['id']}", key="data_conv_save",
                              on_click=_save_conversation, args=(dataset, p, base))


def _save_conversation(dataset: Dataset, p: dict, base: str) -> None:
    if not shown_is(dataset, p["id"]):
        return
    changes = {}
    for name in ("prompt", "chosen", "rejected"):
        if isinstance(p[name], list):
            turns = [{**m, "content": S.get(f"{base}_{name}_{i}", m["content"])}
                     for i, m in enumerate(p[name])]
            if turns != list(p[name]):
                changes[name] = turns
    if not changes:
        S["data_msg"] = ("info", f"Pair {p['id']}: no turn was changed.")
        return
    run(edits.update_pair, workspace_store(), p["id"], changes, p["version"],
        actor="data page", dataset_id=dataset.id, ok=f"Saved the conversation of pair {p['id']}.")


def _local_time(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else ""
