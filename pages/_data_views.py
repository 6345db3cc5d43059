"""Sections of the Data page: picker, filters, paged editor, review, checks, stats, transforms, I/O.

Actions run in widget callbacks (before the body draws), so the body always shows the state after
the action. Errors from callbacks are kept in session state and shown once by `_messages()`.
"""

from __future__ import annotations

import difflib
import html
import json
import random
import time
from collections import Counter

import pandas as pd
import plotly.express as px
import streamlit as st

from dpo_core.data import edits, transforms
from dpo_core.data.checks import run_checks
from dpo_core.data.datasets import Dataset, Pair, get_dataset
from dpo_core.data.io import (
    EXPORT_FORMATS,
    FORMATS,
    export_pairs,
    import_pairs,
    parse_mapping,
    push_dataset,
)
from dpo_core.errors import ConflictError, DPOLabError
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC, load_tokenizer, model_state, resolve_path
from dpo_core.store import open_store
from pages._widgets import errors_shown, workspace

PAGE_SIZE = 25
COUNT_CAP = 1000
ALL = "(all)"
EDIT_COLUMNS = ["prompt", "chosen", "rejected", "split", "source", "tags", "flags", "note"]
SORTS = {"id": "id ↑", "-id": "id ↓", "chosen_len": "chosen length ↑",
         "-chosen_len": "chosen length ↓", "rejected_len": "rejected length ↑",
         "-rejected_len": "rejected length ↓", "prompt_len": "prompt length ↑",
         "-prompt_len": "prompt length ↓"}
S = st.session_state


# -- cached summaries (keyed on dataset and its latest edit: a rerun never rescans) ----------
def edit_mark(db, dataset_id: int) -> int:
    """The latest edit id of a dataset: changes whenever its pairs change."""
    return db.scalar("SELECT COALESCE(MAX(id), 0) FROM edits WHERE dataset_id=?", (dataset_id,))


@st.cache_data(show_spinner="Counting ...", max_entries=16)
def summary(db_path: str, dataset_id: int, created: float, mark: int) -> dict:
    """Counts per split/source, tag and flag names, and word lengths (sampled for charts)."""
    db = open_store(db_path)
    rows = db.query("SELECT id, split, source, prompt, chosen, rejected FROM pairs "
                    "WHERE dataset_id=? AND deleted=0", (dataset_id,))
    names = {col: sorted(r[0] for r in db.query(
        f"SELECT DISTINCT j.value FROM pairs p, json_each(p.{col}) j "
        "WHERE p.dataset_id=? AND p.deleted=0", (dataset_id,))) for col in ("tags", "flags")}
    sample = random.Random(0).sample(list(rows), min(len(rows), 5000))
    return {"sample_ids": [r["id"] for r in sample], "total": len(rows), "splits": dict(Counter(r["split"] for r in rows)),
            "sources": dict(Counter(r["source"] or "(none)" for r in rows)),
            "raw_sources": sorted({r["source"] for r in rows if r["source"]}),
            "tags": names["tags"], "flags": names["flags"],
            "lengths": {k: [len(r[k].split()) for r in sample]
                        for k in ("prompt", "chosen", "rejected")}}


def check_results(db_path: str, dataset_id: int, created: float, mark: int) -> dict:
    """Every check; too_long as well once a max length in tokens is set in the Checks panel."""
    max_tokens = int(S.get("data_max_tokens") or 0)
    return _checks(db_path, dataset_id, created, mark, max_tokens,
                   token_model() if max_tokens else "")


@st.cache_data(show_spinner="Running checks ...", max_entries=16)
def _checks(db_path: str, dataset_id: int, created: float, mark: int, max_tokens: int,
            spec: str) -> dict:
    tokenizer = tokenizer_for(spec) if max_tokens else None
    return run_checks(open_store(db_path), dataset_id, max_tokens=max_tokens or None,
                      tokenizer=tokenizer)


def token_model() -> str:
    """The model whose tokenizer counts tokens: the user's pick, else the default if prepared."""
    default = DEFAULT_SPEC if model_state(DEFAULT_SPEC)["ready"] else TINY_SPEC
    return (S.get("data_token_model") or "").strip() or default


@st.cache_resource(show_spinner="Loading tokenizer ...", max_entries=4)
def tokenizer_for(spec: str):
    return load_tokenizer(resolve_path(spec))


@st.cache_data(show_spinner="Counting tokens ...", max_entries=8)
def token_lengths(db_path: str, dataset_id: int, created: float, mark: int, spec: str,
                  _sample_ids: list[int]) -> dict:
    """Token counts of prompt/chosen/rejected on the stats sample (same pairs as word lengths)."""
    rows = open_store(db_path).query(
        "SELECT prompt, chosen, rejected FROM pairs WHERE id IN (SELECT value FROM json_each(?))"
        " ORDER BY id", (json.dumps(_sample_ids),))
    tok = tokenizer_for(spec)
    return {k: [len(ids) for ids in tok([r[k] for r in rows], add_special_tokens=False)
                ["input_ids"]] for k in ("prompt", "chosen", "rejected")} if rows else {}


# -- callbacks helpers ------------------------------------------------------------------------
def _run(fn, *args, ok: str = "", **kwargs):
    """Run an action from a callback; keep its message (or conflict) for the body to show."""
    try:
        result = fn(*args, **kwargs)
    except ConflictError as exc:
        S.setdefault("data_conflicts", []).append(exc.current)
        S["data_msg"] = ("error", exc.message)
        return None
    except DPOLabError as exc:
        S["data_msg"] = ("error", exc.message + (f"\n\n**Fix:** {exc.fix}" if exc.fix else ""))
        return None
    if ok:
        S["data_msg"] = ("success", ok)
    _refresh()
    return result


def _refresh() -> None:
    S["data_nonce"] = S.get("data_nonce", 0) + 1


def _messages() -> None:
    kind, text = S.pop("data_msg", (None, None))
    if kind:
        getattr(st, kind)(text)
    conflicts = S.get("data_conflicts") or []
    for c in conflicts:
        current, yours = c["current"], c["yours"]
        st.warning(f"Conflict on pair {c.get('pair_id', '')}: nothing was saved. Both versions:")
        fields = sorted(set(yours) | {"prompt", "chosen", "rejected"})
        left, right = st.columns(2)
        left.markdown(f"**Yours** (edited version {c['your_version']})")
        left.json({f: yours.get(f, current.get(f)) for f in fields})
        right.markdown(f"**Current** (version {current['version']})")
        right.json({f: current.get(f) for f in fields})
    if conflicts and st.button("Dismiss conflicts", key="data_dismiss"):
        S["data_conflicts"] = []
        st.rerun()


# -- picker and filters -----------------------------------------------------------------------
def _pick(name: str) -> None:
    S["dataset"] = name
    S["data_picker_next"] = name


def dataset_picker(db) -> Dataset | None:
    """Choose a dataset; honours st.session_state["dataset"] set by other pages."""
    names = [r["name"] for r in db.query("SELECT name FROM datasets ORDER BY id")]
    if not names:
        return None
    wanted = S.pop("data_picker_next", None) or S.get("dataset")
    if wanted in names and wanted != S.get("data_picker"):
        S["data_picker"] = wanted
    elif S.get("data_picker") not in names:
        S["data_picker"] = names[0]
    name = st.selectbox("Dataset", names, key="data_picker",
                        on_change=lambda: S.update(dataset=S["data_picker"]))
    S["dataset"] = name
    if S.get("data_for") != name:
        _forget_dataset_state()
        S["data_for"] = name
    return get_dataset(db, name)


def _forget_dataset_state() -> None:
    """Filters, cursor, picked pair and conflicts belong to one dataset: start over on another
    (a failing-check filter carried over would show "No pairs match")."""
    for key in ("data_check", "data_split", "data_source", "data_tag", "data_flag"):
        S[key] = ALL
    for key in ("data_row", "data_cursor", "data_sig", "data_snap", "data_review_sig"):
        S.pop(key, None)
    S["data_conflicts"] = []


def _clear_check() -> None:
    S["data_check"] = ALL


def filter_bar(summary_: dict, checks: dict) -> dict:
    """Search box and filters; returns keyword arguments for edits.page()."""
    top = st.columns([3, 2, 1], vertical_alignment="bottom")
    search = top[0].text_input("Search prompt, chosen, rejected", key="data_search",
                               placeholder="words to find")
    options = [ALL, *checks]
    if S.get("data_check") not in options:
        S["data_check"] = ALL
    check = top[1].selectbox("Failing check", options, key="data_check",
                             format_func=lambda c: c if c == ALL else
                             f"{c} ({checks[c]['count']:,})")
    deleted = top[2].toggle("Deleted pairs", key="data_deleted",
                            help="Show deleted pairs (to restore them) instead of live ones.")
    cols = st.columns(4)
    split = cols[0].selectbox("Split", [ALL, *sorted(summary_["splits"])], key="data_split")
    source = cols[1].selectbox("Source", [ALL, *summary_["raw_sources"]], key="data_source")
    tag = cols[2].selectbox("Tag", [ALL, *summary_["tags"]], key="data_tag")
    flag = cols[3].selectbox("Flag", [ALL, *summary_["flags"]], key="data_flag")
    pick = {k: (None if v == ALL else v) for k, v in
            {"split": split, "source": source, "tag": tag, "flag": flag}.items()}
    return {**pick, "search": search.strip() or None, "deleted": deleted,
            "ids": checks[check]["ids"] if check != ALL else None, "check": check}


def _query(filters: dict) -> dict:
    return {k: v for k, v in filters.items() if k != "check"}


def _signature(dataset: Dataset, filters: dict) -> tuple:
    return (dataset.id, *(str(filters[k]) for k in ("split", "source", "tag", "flag", "search",
                                                     "deleted", "check")))


# -- browse and edit --------------------------------------------------------------------------
def _snapshot(db, dataset: Dataset, filters: dict) -> dict:
    """The page as the user loaded it (with versions): edits are checked against it."""
    sort = S.get("data_sort", "id")
    sig = (*_signature(dataset, filters), sort)
    if S.get("data_sig") != sig:
        S["data_sig"], S["data_cursor"] = sig, None
    key = (sig, S.get("data_cursor"), S.get("data_nonce", 0))
    snap = S.get("data_snap")
    if snap is None or snap["key"] != key:
        where, at = S.get("data_cursor") or (None, None)
        pg = edits.page(db, dataset.id, limit=PAGE_SIZE, sort=sort, **_query(filters),
                        **({where: at} if where else {}))
        if not pg.pairs and where:  # stepped past the end (rows changed): back to the start
            S["data_cursor"] = None
            pg = edits.page(db, dataset.id, limit=PAGE_SIZE, sort=sort, **_query(filters))
        more_before = where is not None and bool(pg.pairs) and edits.page(
            db, dataset.id, before=pg.first_key, limit=1, sort=sort,
            **_query(filters)).pairs != []
        snap = {"key": (sig, S.get("data_cursor"), S.get("data_nonce", 0)),
                "pairs": [p.__dict__.copy() for p in pg.pairs], "has_more": pg.has_more,
                "has_prev": more_before, "first": pg.first_key, "last": pg.last_key}
        S["data_snap"] = snap
    return snap


def _count(db, dataset: Dataset, filters: dict, total: int) -> tuple[int, str]:
    """Matching pairs and how to show them: the cached total when nothing filters, else a count
    that stops at COUNT_CAP + 1 (shown as "1,000+")."""
    if not any(v for k, v in filters.items() if k != "check") and filters["check"] == ALL:
        return total, f"{total:,}"
    n = edits.count_matches(db, dataset.id, cap=COUNT_CAP, **_query(filters))
    return n, f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"


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
    _refresh()


def workspace_store():
    return open_store(workspace().db_path)


def _follow_edits(db, dataset: Dataset, mark: int | None) -> None:
    """An action in a fragment reruns only the fragment: rerun the whole page once the data
    changed, so the "last edit" caption, filters, counts and checks show it as it is now."""
    if mark is not None and edit_mark(db, dataset.id) != mark:
        st.rerun()


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
def browse(db, dataset: Dataset, filters: dict, total: int, mark: int | None = None) -> None:
    """The paged table: Prev/Next in the chosen sort, edit in place, per-row actions, add, undo."""
    _follow_edits(db, dataset, mark)
    _messages()
    nav = st.columns([1, 1, 2, 2], vertical_alignment="bottom")
    nav[3].selectbox("Sort by", list(SORTS), key="data_sort", format_func=SORTS.get,
                     help="Lengths are in characters; ties are ordered by id.")
    snap = _snapshot(db, dataset, filters)
    editor_key = _editor_key(snap)
    _, shown = _count(db, dataset, filters, total)
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
            save[1].button("Discard edits", key="data_discard", on_click=_refresh)
            save[2].warning(f"{unsaved} row(s) with unsaved edits.")
        _row_actions(snap["pairs"])
    cols = st.columns(3)
    cols[0].button("Undo last edit", key="data_undo", on_click=lambda: _run(
        edits.undo, workspace_store(), dataset=dataset.id, actor="data page",
        ok="Undid the last edit."))
    cols[1].button("Reload page", key="data_reload", on_click=_refresh)
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
    cols[0].button("Swap chosen/rejected", key="data_swap", on_click=lambda: _run(
        edits.swap_pair, store_(), pid, p["version"], actor="data page", ok=f"Swapped {pid}."))
    if p["deleted"]:
        cols[1].button("Restore", key="data_restore", on_click=lambda: _run(
            edits.restore_pair, store_(), pid, p["version"], ok=f"Restored {pid}."))
    else:
        cols[1].button("Delete", key="data_delete", on_click=lambda: _run(
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
    _run(edits.mark_pair, workspace_store(), pair["id"], pair["version"], **{field: value},
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
            pair = _run(edits.add_pair, workspace_store(), dataset.id,
                        Pair(prompt=prompt, chosen=chosen, rejected=rejected, split=split or
                             "train", source="added"), actor="data page")
            if pair is not None:
                S["data_msg"] = ("success", f"Added pair {pair.id}.")
                st.rerun()


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
        done = _run(edits.mark_pair, store_, pid, version, tag="reviewed", actor="review")
    elif action == "swap":
        done = _run(edits.swap_pair, store_, pid, version, actor="review")
        if done is not None:
            _run(edits.mark_pair, store_, pid, version + 1, tag="reviewed", actor="review")
    elif action == "flag":
        done = _run(edits.mark_pair, store_, pid, version, flag="review", actor="review")
    if done is not None:
        S["data_review_after"] = pid
        S["data_reviewed"] = S.get("data_reviewed", 0) + (action != "skip")


@st.fragment
def review(db, dataset: Dataset, filters: dict, total: int, mark: int | None = None) -> None:
    """One pair at a time: prompt, chosen vs rejected with differences marked, and a verdict."""
    _follow_edits(db, dataset, mark)
    sig = _signature(dataset, filters)
    if S.get("data_review_sig") != sig:
        S["data_review_sig"], S["data_review_after"], S["data_reviewed"] = sig, None, 0
    pg = edits.page(db, dataset.id, after=S["data_review_after"], limit=1, **_query(filters))
    total, shown = _count(db, dataset, filters, total)
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


# -- checks and stats -------------------------------------------------------------------------
def checks_panel(checks: dict) -> None:
    st.caption("Pairs failing each check (live pairs). Show one to filter the table to it.")
    cols = st.columns(2)
    cols[0].number_input("Max length in tokens (prompt + longer answer; 0 = off)", min_value=0,
                         value=0, step=64, key="data_max_tokens",
                         help="Adds the too long check, counted with the tokenizer below.")
    cols[1].text_input("Tokenizer of model", key="data_token_model", placeholder=token_model(),
                       help=f"{DEFAULT_SPEC}, {TINY_SPEC}, a model folder or a hub id.")
    for name, result in checks.items():
        cols = st.columns([2, 1, 1])
        cols[0].markdown(f"**{name.replace('_', ' ')}**")
        cols[1].markdown(f"{result['count']:,}")
        cols[2].button("Show", key=f"data_show_{name}", disabled=not result["count"],
                       on_click=lambda n=name: S.update(data_check=n))
    st.button("Clear check filter", key="data_clear_check", on_click=_clear_check)


def stats_panel(summary_: dict, dataset: Dataset | None = None, mark: int = 0) -> None:
    left, right = st.columns(2)
    for col, key, title in ((left, "splits", "Pairs per split"),
                            (right, "sources", "Pairs per source")):
        frame = pd.DataFrame({"name": list(summary_[key]), "pairs": list(summary_[key].values())})
        col.plotly_chart(px.bar(frame, x="name", y="pairs", title=title), key=f"data_{key}")
    lengths = pd.DataFrame(summary_["lengths"])
    if lengths.empty:
        return
    long = lengths.melt(var_name="field", value_name="words")
    left.plotly_chart(px.histogram(long, x="words", color="field", barmode="overlay",
                                   title="Length in words (sample of up to 5,000 pairs)"),
                      key="data_hist")
    right.plotly_chart(px.scatter(lengths, x="chosen", y="rejected", opacity=0.4,
                                  title="Chosen vs rejected length (words)"), key="data_scatter")
    if dataset is None and S.get("dataset"):
        db = workspace_store()
        dataset = get_dataset(db, S["dataset"])
        mark = edit_mark(db, dataset.id)
    if dataset is not None:
        _token_histogram(summary_, dataset, mark)


def _token_histogram(summary_: dict, dataset: Dataset, mark: int) -> None:
    """Length in tokens of the chosen model's tokenizer, on demand (loading one takes seconds)."""
    spec = token_model()
    if not st.toggle(f"Length in tokens ({spec}; pick the model in Checks)", key="data_tokens"):
        return
    try:
        counts = token_lengths(str(workspace().db_path), dataset.id, dataset.created, mark,
                               spec, summary_["sample_ids"])
    except DPOLabError as exc:
        st.error(exc.message + (f"\n\n**Fix:** {exc.fix}" if exc.fix else ""))
        return
    if counts:
        long = pd.DataFrame(counts).melt(var_name="field", value_name="tokens")
        st.plotly_chart(px.histogram(long, x="tokens", color="field", barmode="overlay",
                                     title=f"Length in tokens ({spec}, same sample)"),
                        key="data_token_hist")


# -- transforms, import, export ---------------------------------------------------------------
def transform_panel(db, dataset: Dataset) -> None:
    kind, text = S.pop("data_transform_msg", (None, None))
    if kind:  # set by the click below, shown after its rerun
        getattr(st, kind)(text)
    op = st.selectbox("Transform", ["split", "noise", "dedupe", "filter", "sample"],
                      key="data_op", format_func={
                          "split": "Train/eval split", "noise": "Label noise (flip a fraction)",
                          "dedupe": "Deduplicate", "filter": "Filter by check or search",
                          "sample": "Sample N"}.get)
    args: dict = {}
    if op == "split":
        args["eval_size"] = st.number_input("Eval size (fraction < 1 or count)", value=0.1,
                                            min_value=0.0, key="data_eval_size")
        args["first"] = st.radio("How", ["random", "first N train"], key="data_split_how",
                                 horizontal=True) != "random"
    if op == "noise":
        args["flip"] = st.slider("Fraction to flip", 0.0, 1.0, 0.1, key="data_flip")
    if op == "filter":
        args["check"] = st.selectbox("Check", [None, *run_checks_names()], key="data_f_check")
        args["search"] = st.text_input("or search", key="data_f_search") or None
        args["keep"] = st.toggle("Keep only the matches (instead of dropping them)",
                                 key="data_f_keep")
    if op == "sample":
        args["n"] = st.number_input("N", min_value=1, value=100, step=1, key="data_n")
    if op in ("split", "noise", "sample"):
        args["seed"] = st.number_input("Seed", value=0, step=1, key="data_seed")
    into = st.text_input("New dataset name", value=f"{dataset.name}-{op}", key=f"data_into_{op}")
    fns = {"split": transforms.split_dataset, "noise": transforms.add_label_noise,
           "dedupe": transforms.dedupe, "filter": transforms.filter_dataset,
           "sample": transforms.sample_dataset}
    if st.button("Create dataset", key="data_transform"):
        if "n" in args:
            args["n"] = int(args["n"])
        made = fns[op](db, dataset.id, into=into, **args)
        done = f"Created {made.name} from {dataset.name}; it is now the open dataset."
        S["data_msg"] = S["data_transform_msg"] = ("success", done)  # Browse and here
        _pick(made.name)
        st.rerun()


def run_checks_names() -> list[str]:
    from dpo_core.data.checks import CHECKS

    return [c for c in CHECKS if c != "too_long"]


def export_panel(db, dataset: Dataset) -> None:
    st.subheader("Export")
    cols = st.columns([1, 1, 2])
    fmt = cols[0].selectbox("Format", EXPORT_FORMATS, key="data_export_fmt")
    split = cols[1].selectbox("Split", [ALL, "train", "eval"], key="data_export_split")
    if st.button("Prepare export", key="data_export"):
        path = workspace().exports / f"{dataset.name}.{fmt}"
        n = export_pairs(db, dataset.id, path, fmt, None if split == ALL else split)
        S["data_export_file"] = (str(path), n)
    ready = S.get("data_export_file")
    if ready and ready[0].endswith(f"{dataset.name}.{fmt}"):
        with open(ready[0], "rb") as fh:
            st.download_button(f"Download {ready[1]:,} pairs ({fmt})", fh.read(),
                               file_name=ready[0].rsplit("/", 1)[-1], key="data_download")
        if fmt == "csv":
            st.caption("The CSV guards cells starting with = + - @ (and tab/CR/NUL) with a "
                       "leading ' so spreadsheets do not run them as formulas.")
    hub_push_form(db, dataset)


def hub_push_form(db, dataset: Dataset) -> None:
    """Push the live pairs (one hub split per split) to a Hugging Face dataset repo."""
    with st.expander("Push to the Hugging Face hub (needs network and a write token)"):
        with st.form("data_push_form"):
            cols = st.columns([2, 2, 1])
            repo = cols[0].text_input("Repo id", key="data_push_repo",
                                      placeholder=f"your-name/{dataset.name}")
            token = cols[1].text_input("Write token (empty: $HF_TOKEN)", type="password",
                                       key="data_push_token")
            private = cols[2].toggle("Private", value=True, key="data_push_private")
            pushed = st.form_submit_button("Push dataset")
        if not pushed:
            return
        with errors_shown(), st.spinner(f"Pushing {dataset.name} to {repo} ..."):
            url = push_dataset(db, dataset.id, repo.strip(), token=token.strip() or None,
                               private=private)
            st.success(f"Pushed to {url}")


# The library's import messages name the CLI flag; the page has a mapping box instead.
CLI_WORDS = (("pass --map prompt=COL,chosen=COL,rejected=COL",
              "fill in Column mapping in the Import form (e.g. prompt=question,chosen=good,"
              "rejected=bad)"),
             ("with --map prompt=COL,chosen=COL,rejected=COL", "mapped in Column mapping"),
             ("Write --map", "Write Column mapping as"),
             ("Fix --map", "Fix Column mapping"),
             ("--map part", "Column mapping part"),
             ("--map", "Column mapping"))


def _page_words(text: str) -> str:
    for cli, page in CLI_WORDS:
        text = text.replace(cli, page)
    return text


def import_form(db) -> None:
    st.subheader("Import")
    kind, text = S.pop("data_import_msg", (None, None))
    if kind:
        getattr(st, kind)(text)
    with st.form("data_import_form"):
        upload = st.file_uploader("File (CSV, JSON, JSON Lines, Parquet)", key="data_upload")
        hub = st.text_input("... or a Hugging Face dataset id (needs network)", key="data_hub")
        cols = st.columns(3)
        fmt = cols[0].selectbox("Format", FORMATS, key="data_import_fmt")
        split = cols[1].selectbox("Split", ["train", "eval"], key="data_import_split")
        name = cols[2].text_input("New dataset name", key="data_import_name")
        mapping = st.text_input("Column mapping (optional)", key="data_import_map",
                                placeholder="prompt=question,chosen=good,rejected=bad")
        submitted = st.form_submit_button("Import")
    if not submitted:
        return
    source = hub.strip() or None
    if upload is not None:
        path = workspace().cache / "uploads" / upload.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(upload.getvalue())
        source = path
    if source is None:
        st.error("Choose a file or enter a hub dataset id.")
        return
    name = name.strip() or (upload.name.rsplit(".", 1)[0] if upload else hub.split("/")[-1])
    try:
        result = import_pairs(db, source, dataset=name, format=fmt if upload else "hub",
                              mapping=parse_mapping(mapping), split=split)
    except DPOLabError as exc:
        st.error(_page_words(exc.message + (f"\n\n**Fix:** {exc.fix}" if exc.fix else "")))
        return
    done = f"Imported {result.count:,} pairs into {result.dataset.name} (shape: {result.shape})."
    S["data_msg"] = S["data_import_msg"] = ("success", done)  # Browse and here, where the user is
    _pick(result.dataset.name)
    st.rerun()
