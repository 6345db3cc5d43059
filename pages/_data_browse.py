"""The Data page's Browse tab: the paged table in the chosen sort, edits in place (saved with the
version each row was loaded at), add and undo; the picked pair's panel is pages/_data_pair.py.

A conversation shows in its cell as `role: content` lines and is edited turn by turn in the pair
panel; typed over in the grid, it is refused (a cell cannot hold the message list)."""

from __future__ import annotations

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
    cell_text,
    count,
    follow_edits,
    messages,
    query,
    refresh,
    run,
    signature,
    workspace_store,
)
from pages._data_pair import pair_panel
from pages._widgets import ensure_routed

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()


# -- browse and edit --------------------------------------------------------------------------
def _snapshot(db, dataset: Dataset, filters: dict) -> dict:
    """The page as the user loaded it (with versions): edits are checked against it."""
    sort = S.get("data_sort", "id")
    sig = (*signature(dataset, filters), sort)
    if S.get("data_sig") != sig:
        S["data_sig"], S["data_cursor"] = sig, None
    if "data_open_cursor" in S:  # a pair another page asked for: its page starts with it
        S["data_cursor"] = S.pop("data_open_cursor")
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
             **{c: ", ".join(p[c]) if c in ("tags", "flags") else cell_text(p[c])
                for c in EDIT_COLUMNS},
             **{f"· {k}": _short(v) for k, v in (p["meta"].get("columns") or {}).items()}}
            for p in pairs]
    extra = list(dict.fromkeys(k for r in rows for k in r if k.startswith("· ")))
    return pd.DataFrame(rows, columns=["id", "version", *EDIT_COLUMNS, *extra])


def _short(value) -> str:
    """A kept import column's value in a cell (the full value is in the pair panel)."""
    return value if isinstance(value, str) else str(value)[:200]


def _changes(original: dict, edited: dict) -> dict:
    changes = {}
    for col, value in edited.items():
        if col not in EDIT_COLUMNS:
            continue
        if col in ("tags", "flags"):
            value = [v.strip() for v in str(value or "").split(",") if v.strip()]
        elif value is None:
            value = ""
        if value != (cell_text(original[col]) if isinstance(original[col], list)
                     else original[col]):
            changes[col] = value
    return changes


def _conversation_cells(original: dict, changes: dict) -> list[str]:
    """Fields of the change that are conversations: a grid cell cannot hold a message list."""
    return [c for c in ("prompt", "chosen", "rejected")
            if c in changes and isinstance(original[c], list)]


def _save_editor(editor_key: str) -> None:
    """Save every edited row of the page with the version it was loaded at."""
    snap, state = S["data_snap"], S.get(editor_key) or {}
    saved, S["data_conflicts"] = 0, []
    for row, edited in (state.get("edited_rows") or {}).items():
        original = snap["pairs"][int(row)]
        changes = _changes(original, edited)
        if not changes:
            continue
        if cells := _conversation_cells(original, changes):
            S["data_msg"] = ("error", f"Pair {original['id']}: {', '.join(cells)} is a "
                             "conversation; edit its turns under \"Edit conversation\" below "
                             "the table. Nothing of that row was saved.")
            continue
        try:
            edits.update_pair(workspace_store(), original["id"], changes, original["version"],
                              actor="data page", dataset_id=original["dataset_id"])
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
        frame = _frame(snap["pairs"])
        kept = [c for c in frame.columns if c.startswith("· ")]  # import columns: shown only
        st.data_editor(frame, key=editor_key, hide_index=True,
                       disabled=["id", "version", *kept], width="stretch",
                       column_config={c: st.column_config.TextColumn(c, width="medium")
                                      for c in ("prompt", "chosen", "rejected")})
        save = st.columns([1, 1, 4], vertical_alignment="center")
        save[0].button("Save edits", key="data_save", type="primary", on_click=_save_editor,
                       args=(editor_key,))
        unsaved = _unsaved(editor_key)
        if unsaved:
            save[1].button("Discard edits", key="data_discard", on_click=refresh)
            save[2].warning(f"{unsaved} row(s) with unsaved edits.")
        pair_panel(dataset, snap["pairs"], filters["search"])
    cols = st.columns(3)
    cols[0].button("Undo last edit", key="data_undo", on_click=lambda: run(
        edits.undo, workspace_store(), dataset=dataset.id, actor="data page",
        ok="Undid the last edit."))
    cols[1].button("Reload page", key="data_reload", on_click=refresh)
    with cols[2].popover("Add a pair"):
        _add_form(dataset)


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
