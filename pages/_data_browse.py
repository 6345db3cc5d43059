"""The Data page's Browse tab: the paged table in the chosen sort, edits in place (saved with the
version each row was loaded at), per-row actions, add, undo and each pair's history."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dpo_core.data import edits
from dpo_core.data.browse import page
from dpo_core.data.datasets import Dataset, Pair
from dpo_core.errors import ConflictError, DPOLabError
from pages._data_common import (
    EDIT_COLUMNS,
    PAGE_SIZE,
    SORTS,
    S,
    count,
    follow_edits,
    messages,
    query,
    refresh,
    run,
    signature,
    workspace_store,
)


# -- browse and edit --------------------------------------------------------------------------
def _snapshot(db, dataset: Dataset, filters: dict) -> dict:
    """The page as the user loaded it (with versions): edits are checked against it."""
    sort = S.get("data_sort", "id")
    sig = (*signature(dataset, filters), sort)
    if S.get("data_sig") != sig:
        S["data_sig"], S["data_cursor"] = sig, None
    key = (sig, S.get("data_cursor"), S.get("data_nonce", 0))
    snap = S.get("data_snap")
    if snap is None or snap["key"] != key:
        where, at = S.get("data_cursor") or (None, None)
        pg = page(db, dataset.id, limit=PAGE_SIZE, sort=sort, **query(filters),
                        **({where: at} if where else {}))
        if not pg.pairs and where:  # stepped past the end (rows changed): back to the start
            S["data_cursor"] = None
            pg = page(db, dataset.id, limit=PAGE_SIZE, sort=sort, **query(filters))
        more_before = where is not None and bool(pg.pairs) and page(
            db, dataset.id, before=pg.first_key, limit=1, sort=sort,
            **query(filters)).pairs != []
        snap = {"key": (sig, S.get("data_cursor"), S.get("data_nonce", 0)),
                "pairs": [p.__dict__.copy() for p in pg.pairs], "has_more": pg.has_more,
                "has_prev": more_before, "first": pg.first_key, "last": pg.last_key}
        S["data_snap"] = snap
    return snap


def _frame(pairs: list[dict]) -> pd.DataFrame:
    rows = [{"id": p["id"], "version": p["version"],
             **{c: ", ".join(p[c]) if c in ("tags", "flags") else p[c] for c in EDIT_COLUMNS}}
            for p in pairs]
    return pd.DataFrame(rows, columns=["id", "version", *EDIT_COLUMNS])


def _changes(original: dict, edited: dict) -> dict:
    changes = {}
    for col, value in edited.items():
        if col not in EDIT_COLUMNS:
            continue
        if col in ("tags", "flags"):
            value = [v.strip() for v in str(value or "").split(",") if v.strip()]
        elif value is None:
            value = ""
        if value != original[col]:
            changes[col] = value
    return changes


def _save_editor(editor_key: str) -> None:
    """Save every edited row of the page with the version it was loaded at."""
    snap, state = S["data_snap"], S.get(editor_key) or {}
    saved, S["data_conflicts"] = 0, []
    for row, edited in (state.get("edited_rows") or {}).items():
        original = snap["pairs"][int(row)]
        changes = _changes(original, edited)
        if not changes:
            continue
        try:
            edits.update_pair(workspace_store(), original["id"], changes, original["version"],
                              actor="data page")
            saved += 1
        except ConflictError as exc:
            S["data_conflicts"].append({**exc.current, "pair_id": original["id"]})
        except DPOLabError as exc:
            S["data_msg"] = ("error", f"Pair {original['id']}: {exc.message}")
    if S["data_conflicts"]:
        S["data_msg"] = ("error", f"Saved {saved} row(s); {len(S['data_conflicts'])} refused "
                                  "because someone else changed them first.")
    elif "data_msg" not in S:
        S["data_msg"] = ("success", f"Saved {saved} row(s).")
    refresh()


def _editor_key(snap: dict) -> str:
    return f"data_editor_{abs(hash(snap['key']))}"


def _unsaved(editor_key: str) -> int:
    """How many rows of the shown page have edits in the grid that are not saved yet."""
    snap, state = S.get("data_snap"), S.get(editor_key) or {}
    if snap is None or not isinstance(state, dict):
        return 0
    return sum(1 for row, edited in (state.get("edited_rows") or {}).items()
               if int(row) < len(snap["pairs"]) and _changes(snap["pairs"][int(row)], edited))


def _step(where: str, at: int | tuple | None, editor_key: str = "") -> None:
    """Go to the next/previous page, unless the grid holds unsaved edits (paging would drop
    them): then stay and say so."""
    n = _unsaved(editor_key)
    if n:
        S["data_msg"] = ("warning", f"{n} row(s) on this page have unsaved edits: press Save "
                                    "edits to keep them or Discard edits, then change page.")
        return
    S["data_cursor"] = (where, at) if at is not None else None


@st.fragment
def browse_tab(db, dataset: Dataset, filters: dict, total: int, mark: int | None = None) -> None:
    """The paged table: Prev/Next in the chosen sort, edit in place, per-row actions, add, undo."""
    follow_edits(db, dataset, mark)
    messages()
    nav = st.columns([1, 1, 2, 2], vertical_alignment="bottom")
    nav[3].selectbox("Sort by", list(SORTS), key="data_sort", format_func=SORTS.get,
                     help="Lengths are in characters; ties are ordered by id.")
    snap = _snapshot(db, dataset, filters)
    editor_key = _editor_key(snap)
    _, shown = count(db, dataset, filters, total)
    nav[0].button("◀ Prev", key="data_prev", disabled=not snap["has_prev"],
                  on_click=_step, args=("before", snap["first"], editor_key))
    nav[1].button("Next ▶", key="data_next", disabled=not snap["has_more"],
                  on_click=_step, args=("after", snap["last"], editor_key))
    ids = [p["id"] for p in snap["pairs"]]
    nav[2].caption(f"{shown} matching pairs · showing ids {min(ids)}–{max(ids)}" if ids
                   else f"{shown} matching pairs")
    if not ids:
        st.info("No pairs match.")
    else:
        st.data_editor(_frame(snap["pairs"]), key=editor_key, hide_index=True,
                       disabled=["id", "version"], width="stretch",
                       column_config={c: st.column_config.TextColumn(c, width="medium")
                                      for c in ("prompt", "chosen", "rejected")})
        save = st.columns([1, 1, 4], vertical_alignment="center")
        save[0].button("Save edits", key="data_save", type="primary", on_click=_save_editor,
                       args=(editor_key,))
        unsaved = _unsaved(editor_key)
        if unsaved:
            save[1].button("Discard edits", key="data_discard", on_click=refresh)
            save[2].warning(f"{unsaved} row(s) with unsaved edits.")
        _row_actions(snap["pairs"])
    cols = st.columns(3)
    cols[0].button("Undo last edit", key="data_undo", on_click=lambda: run(
        edits.undo, workspace_store(), dataset=dataset.id, actor="data page",
        ok="Undid the last edit."))
    cols[1].button("Reload page", key="data_reload", on_click=refresh)
    with cols[2].popover("Add a pair"):
        _add_form(dataset)


def _row_actions(pairs: list[dict]) -> None:
    by_id = {p["id"]: p for p in pairs}
    pid = st.selectbox("Pair", list(by_id), key="data_row",
                       format_func=lambda i: f"{i}: {by_id[i]['prompt'][:70]}")
    if pid not in by_id:
        return
    p, store_ = by_id[pid], workspace_store
    cols = st.columns(6)
    cols[0].button("Swap chosen/rejected", key="data_swap", on_click=lambda: run(
        edits.swap_pair, store_(), pid, p["version"], actor="data page", ok=f"Swapped {pid}."))
    if p["deleted"]:
        cols[1].button("Restore", key="data_restore", on_click=lambda: run(
            edits.restore_pair, store_(), pid, p["version"], ok=f"Restored {pid}."))
    else:
        cols[1].button("Delete", key="data_delete", on_click=lambda: run(
            edits.delete_pair, store_(), pid, p["version"], ok=f"Deleted {pid}."))
    # Forms: clicking the button sends what was typed with the click (no Enter needed).
    for col, field in ((cols[2], "tag"), (cols[3], "flag")):
        with col.form(f"data_{field}_form", clear_on_submit=True, border=False):
            st.text_input(f"Add {field}", key=f"data_new_{field}")
            st.form_submit_button(f"Add {field}", key=f"data_add_{field}", on_click=_mark,
                                  args=(p, field, f"data_new_{field}"))
    with cols[4].form("data_note_form", border=False):
        note_key = f"data_note_{pid}_{p['version']}"  # a new version shows the note it saved
        st.text_input("Note", value=p["note"], key=note_key)
        st.form_submit_button("Save note", key="data_save_note", on_click=_mark,
                              args=(p, "note", note_key))
    with st.expander(f"History of pair {pid}"):
        rows = edits.history(store_(), pid)
        if rows:
            st.dataframe(pd.DataFrame([{**r, "at": _local_time(r["at"]),
                                        "before": str(r["before"]), "after": str(r["after"])}
                                       for r in rows]), hide_index=True, width="stretch")
        else:
            st.caption("No edits yet.")


def _mark(pair: dict, field: str, key: str) -> None:
    """Add the tag/flag or save the note typed in the box `key` (read when the button is hit)."""
    value = S.get(key) or ""
    if field != "note":
        value = value.strip()
        if not value:
            S["data_msg"] = ("error", f"Type a {field} in the box first, then press Add {field}.")
            return
    done = {"tag": f"Added tag '{value}' to", "flag": f"Added flag '{value}' to",
            "note": "Saved note on"}[field]
    run(edits.mark_pair, workspace_store(), pair["id"], pair["version"], **{field: value},
         actor="data page", ok=f"{done} {pair['id']}.")


def _local_time(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else ""


def _add_form(dataset: Dataset) -> None:
    with st.form("data_add_form", clear_on_submit=True):
        prompt = st.text_area("Prompt")
        chosen = st.text_area("Chosen")
        rejected = st.text_area("Rejected")
        split = st.text_input("Split", value="train")
        if st.form_submit_button("Add pair"):
            pair = run(edits.add_pair, workspace_store(), dataset.id,
                        Pair(prompt=prompt, chosen=chosen, rejected=rejected, split=split or
                             "train", source="added"), actor="data page")
            if pair is not None:
                S["data_msg"] = ("success", f"Added pair {pair.id}.")
                st.rerun()
