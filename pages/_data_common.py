"""State and helpers shared by the Data page's sections: cached summaries and checks, action
callbacks and their messages, the dataset picker, the filter bar, a pair another page asked to
open, and texts shown as what they are (a conversation as its turns).

Actions run in widget callbacks (before the body draws), so the body always shows the state after
the action. Errors from callbacks are kept in session state and shown once by `messages()`.
"""

from __future__ import annotations

import html

import streamlit as st

from dpo_core.data.browse import SEARCH_FIELDS, count_matches, highlight
from dpo_core.data.checks import CHECKS, check_counts, checked_before
from dpo_core.data.datasets import Dataset, dataset_names, get_dataset, lineage
from dpo_core.data.edits import get_pair, last_edit_id
from dpo_core.data.stats import dataset_summary, token_lengths
from dpo_core.data.truncation import truncated_ids
from dpo_core.errors import ConflictError, DPOLabError
from dpo_core.formats import as_messages, plain_text
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC, load_tokenizer, model_state, resolve_path
from dpo_core.store import open_store
from pages._widgets import ensure_routed, workspace

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()

PAGE_SIZE = 25
COUNT_CAP = 1000
ALL = "(all)"
TABS = ["Browse", "Review", "Checks", "Stats", "Transform", "Import / Export"]
REVIEW = "Review"
REVIEW_STATES = {ALL: ALL, "unreviewed": "not reviewed yet", "reviewed": "reviewed"}
EDIT_COLUMNS = ["prompt", "chosen", "rejected", "split", "source", "tags", "flags", "note"]
SORTS = {"id": "id ↑", "-id": "id ↓", "chosen_len": "chosen length ↑",
         "-chosen_len": "chosen length ↓", "rejected_len": "rejected length ↑",
         "-rejected_len": "rejected length ↓", "prompt_len": "prompt length ↑",
         "-prompt_len": "prompt length ↓"}
S = st.session_state


# -- summaries and checks (kept current by the library: a rerun never rescans) ---------------
def edit_mark(db, dataset_id: int) -> int:
    """The latest edit id of a dataset: changes whenever its pairs change."""
    return last_edit_id(db, dataset_id)


def summary(db, dataset_id: int, lengths: bool = False) -> dict:
    """Counts per split/source, tag and flag names, and (for the charts) word lengths of a
    sample: kept current edit by edit by the library, so read fresh on every run."""
    return dataset_summary(db, dataset_id, lengths=lengths)


def check_results(db, dataset_id: int, created: float, mark: int) -> dict:
    """{check: {"count": n}} of every stored check (kept current edit by edit, so never a
    rescan); `truncated` with its ids too once a max length is set in the Checks panel."""
    if checked_before(db, dataset_id):
        counts = check_counts(db, dataset_id)
    else:
        with st.spinner("Checking every pair once (later edits update the checks) ...",
                        show_time=True):
            counts = check_counts(db, dataset_id)
    results = {name: {"count": n} for name, n in counts.items()}
    max_tokens = int(S.get("data_max_tokens") or 0)
    if max_tokens:
        ids = _truncated(db.path, dataset_id, created, mark, max_tokens,
                         int(S.get("data_max_prompt_tokens") or 0), token_model())
        results["truncated"] = {"count": len(ids), "ids": ids}
    return results


@st.cache_data(show_spinner="Rendering pairs for the model ...", max_entries=8)
def _truncated(db_path: str, dataset_id: int, created: float, mark: int, max_tokens: int,
               max_prompt_tokens: int, spec: str) -> list[int]:
    return truncated_ids(open_store(db_path), dataset_id, tokenizer_for(spec), max_tokens,
                         max_prompt_length=max_prompt_tokens, model_path=resolve_path(spec))


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


def notice() -> None:
    """What the last action did, or why it was refused (shown once, on any tab)."""
    kind, text = S.pop("data_msg", (None, None))
    if kind:
        getattr(st, kind)(text)


def messages() -> None:
    notice()
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
    for key in ("data_check", "data_split", "data_source", "data_tag", "data_flag",
                "data_review_state"):
        S[key] = ALL
    for key in ("data_cursor", "data_sig", "data_snap", "data_review_sig", "data_review_undo",
                "data_review_after", "data_column"):
        S.pop(key, None)
    for key in [k for k in S if str(k).startswith("data_row_")]:
        S.pop(key, None)  # the pair selector of a dataset is keyed by its id: a fresh one
    S["data_conflicts"] = []


def open_requested_pair(db, dataset: Dataset) -> int | None:
    """The pair another page asked for (st.session_state["pair_id"], with "dataset"): shown on
    the Browse tab as the first row, picked in the pair selector. Asked once."""
    wanted = S.pop("pair_id", None)
    if wanted is None:
        return None
    try:
        pair = get_pair(db, int(wanted))
    except (DPOLabError, TypeError, ValueError):
        S["data_msg"] = ("warning", f"Pair {wanted} does not exist any more.")
        return None
    if pair.dataset_id != dataset.id:
        S["data_msg"] = ("warning", f"Pair {pair.id} is not in {dataset.name}; nothing opened.")
        return None
    for key in ("data_check", "data_split", "data_source", "data_tag", "data_flag",
                "data_review_state"):
        S[key] = ALL
    S["data_search"], S["data_column"], S["data_sort"] = "", "", "id"
    S["data_search_fields"] = []
    S["data_deleted"] = pair.deleted
    S["data_open_cursor"] = ("after", pair.id - 1)  # taken by the table once its filters are set
    S[f"data_row_{dataset.id}"] = pair.id
    S["data_tab"] = "Browse"
    S["data_msg"] = ("info", f"Opened pair {pair.id} of {dataset.name}.")
    return pair.id


def clear_check() -> None:
    S["data_check"] = ALL


def filter_bar(summary_: dict, checks: dict) -> dict:
    """Search box and filters; returns keyword arguments for edits.page()."""
    top = st.columns([3, 1, 2, 1], vertical_alignment="bottom")
    search = top[0].text_input("Search prompt, chosen, rejected", key="data_search",
                               placeholder='words, "a phrase", prefix*',
                               help='All words must appear; "quoted words" together; ball* '
                                    'matches ball, balls, balloon.')
    fields = top[1].multiselect("in", SEARCH_FIELDS, key="data_search_fields",
                                placeholder="all fields")
    options = [ALL, *checks]
    if S.get("data_check") not in options:
        S["data_check"] = ALL
    check = top[2].selectbox("Failing check", options, key="data_check",
                             format_func=lambda c: c if c == ALL else
                             f"{c} ({checks[c]['count']:,})")
    deleted = top[3].toggle("Deleted pairs", key="data_deleted",
                            help="Show deleted pairs (to restore them) instead of live ones.")
    cols = st.columns(6)
    split = cols[0].selectbox("Split", [ALL, *sorted(summary_["splits"])], key="data_split")
    source = cols[1].selectbox("Source", [ALL, *summary_["raw_sources"]], key="data_source")
    tag = cols[2].selectbox("Tag", [ALL, *summary_["tags"]], key="data_tag")
    flag = cols[3].selectbox("Flag", [ALL, *summary_["flags"]], key="data_flag")
    state = cols[4].selectbox("Review", list(REVIEW_STATES), key="data_review_state",
                              format_func=REVIEW_STATES.get)
    column = cols[5].text_input("Column", key="data_column", placeholder="rating>=4",
                                help="Filter on a column the import kept: "
                                f"{', '.join(summary_.get('columns', [])) or 'none here'}.")
    pick = {k: (None if v == ALL else v) for k, v in
            {"split": split, "source": source, "tag": tag, "flag": flag}.items()}
    return {**pick, "search": search.strip() or None, "deleted": deleted,
            "ids": checks[check].get("ids") if check != ALL else None, "check": check,
            "reviewed": None if state == ALL else state == "reviewed",
            "column": column.strip() or None, "fields": fields or None}


def query(filters: dict) -> dict:
    """browse.page() arguments: a stored check filters in SQL, `truncated` by its ids."""
    out = {k: v for k, v in filters.items() if k != "check"}
    out["check"] = filters["check"] if filters["check"] in CHECKS else None
    return out


def signature(dataset: Dataset, filters: dict) -> tuple:
    return (dataset.id, *(str(filters[k]) for k in ("split", "source", "tag", "flag", "search",
                                                     "deleted", "check", "reviewed", "column",
                                                     "fields")))


def count(db, dataset: Dataset, filters: dict, total: int) -> tuple[int, str]:
    """Matching pairs and how to show them: the cached total when nothing filters, else a count
    that stops at COUNT_CAP + 1 (shown as "1,000+")."""
    active = any(filters[k] for k in ("split", "source", "tag", "flag", "search", "ids",
                                      "column", "deleted"))
    if not active and filters["reviewed"] is None and filters["check"] == ALL:
        return total, f"{total:,}"
    n = count_matches(db, dataset.id, cap=COUNT_CAP, **query(filters))
    return n, f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"


def workspace_store():
    return open_store(workspace().db_path)


def lineage_text(db, dataset: Dataset) -> str:
    """'made from demo-childes (split) <- ...', names kept even once a parent is deleted."""
    chain = lineage(db, dataset.id)
    if not chain:
        return "imported" if "import" in dataset.recipe else "original"
    parts = [f"{c['name']}{'' if c['id'] else ' (deleted)'}" for c in chain]
    return f"made by {chain[0]['op'] or 'a transform'} from " + " ← ".join(parts)


def show_text(value, search: str | None = None) -> None:
    """A pair field as it is: a conversation as its turns (role by role), text as text; the
    words of a search marked."""
    messages = as_messages(value) if isinstance(value, list) else None
    if messages is None:
        _text(value, search)
        return
    for message in messages:
        with st.chat_message(_AVATARS.get(message["role"], message["role"][:1] or "?")):
            st.caption(message["role"])
            _text(message["content"], search)


def _text(text: str, search: str | None) -> None:
    if not search:
        st.text(text)
        return
    marked = highlight(text, search, escape=html.escape)
    st.html(f'<div style="white-space: pre-wrap; font-family: monospace">{marked}</div>')


_AVATARS = {"user": "user", "assistant": "assistant", "system": "⚙️", "tool": "🛠️"}


def cell_text(value) -> str:
    """A pair field in a table cell: a conversation as its last turn (the one being answered,
    or the reply), with how many turns come before it; every turn shows in the pair panel."""
    messages = as_messages(value) if isinstance(value, list) else None
    if messages is None:
        return plain_text(value)
    last = messages[-1]
    earlier = f"  [after {len(messages) - 1} earlier turn(s)]" if len(messages) > 1 else ""
    return f"{last['role']}: {last['content']}{earlier}"


def follow_edits(db, dataset: Dataset, mark: int | None) -> None:
    """An action in a fragment reruns only the fragment: rerun the whole page once the data
    changed, so the "last edit" caption, filters, counts and checks show it as it is now."""
    if mark is not None and edit_mark(db, dataset.id) != mark:
        st.rerun()
