"""State and helpers shared by the Data page's sections: cached summaries and checks, action
callbacks and their messages, the dataset picker and the filter bar.

Actions run in widget callbacks (before the body draws), so the body always shows the state after
the action. Errors from callbacks are kept in session state and shown once by `messages()`.
"""

from __future__ import annotations

import streamlit as st

from dpo_core.data.browse import count_matches
from dpo_core.data.checks import run_checks
from dpo_core.data.datasets import Dataset, dataset_names, get_dataset
from dpo_core.data.edits import last_edit_id
from dpo_core.data.stats import dataset_summary, token_lengths
from dpo_core.errors import ConflictError, DPOLabError
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC, load_tokenizer, model_state, resolve_path
from dpo_core.store import open_store
from pages._widgets import workspace

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
    return last_edit_id(db, dataset_id)


@st.cache_data(show_spinner="Counting ...", max_entries=16)
def summary(db_path: str, dataset_id: int, created: float, mark: int) -> dict:
    """Counts per split/source, tag and flag names, and word lengths (sampled for charts)."""
    return dataset_summary(open_store(db_path), dataset_id)


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
def token_counts(db_path: str, dataset_id: int, created: float, mark: int, spec: str,
                 _sample_ids: list[int]) -> dict:
    """Token counts of prompt/chosen/rejected on the stats sample (same pairs as word lengths)."""
    return token_lengths(open_store(db_path), _sample_ids, tokenizer_for(spec))


# -- callbacks helpers ------------------------------------------------------------------------
def run(fn, *args, ok: str = "", **kwargs):
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
    refresh()
    return result


def refresh() -> None:
    S["data_nonce"] = S.get("data_nonce", 0) + 1


def messages() -> None:
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
def pick(name: str) -> None:
    S["dataset"] = name
    S["data_picker_next"] = name


def dataset_picker(db) -> Dataset | None:
    """Choose a dataset; honours st.session_state["dataset"] set by other pages."""
    names = dataset_names(db)
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
        forget_dataset_state()
        S["data_for"] = name
    return get_dataset(db, name)


def forget_dataset_state() -> None:
    """Filters, cursor, picked pair and conflicts belong to one dataset: start over on another
    (a failing-check filter carried over would show "No pairs match")."""
    for key in ("data_check", "data_split", "data_source", "data_tag", "data_flag"):
        S[key] = ALL
    for key in ("data_row", "data_cursor", "data_sig", "data_snap", "data_review_sig"):
        S.pop(key, None)
    S["data_conflicts"] = []


def clear_check() -> None:
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


def query(filters: dict) -> dict:
    return {k: v for k, v in filters.items() if k != "check"}


def signature(dataset: Dataset, filters: dict) -> tuple:
    return (dataset.id, *(str(filters[k]) for k in ("split", "source", "tag", "flag", "search",
                                                     "deleted", "check")))


def count(db, dataset: Dataset, filters: dict, total: int) -> tuple[int, str]:
    """Matching pairs and how to show them: the cached total when nothing filters, else a count
    that stops at COUNT_CAP + 1 (shown as "1,000+")."""
    if not any(v for k, v in filters.items() if k != "check") and filters["check"] == ALL:
        return total, f"{total:,}"
    n = count_matches(db, dataset.id, cap=COUNT_CAP, **query(filters))
    return n, f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"


def workspace_store():
    return open_store(workspace().db_path)


def follow_edits(db, dataset: Dataset, mark: int | None) -> None:
    """An action in a fragment reruns only the fragment: rerun the whole page once the data
    changed, so the "last edit" caption, filters, counts and checks show it as it is now."""
    if mark is not None and edit_mark(db, dataset.id) != mark:
        st.rerun()
