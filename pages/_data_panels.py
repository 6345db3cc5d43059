"""The Data page's other tabs: checks, statistics, transforms (derived datasets), import,
export and the hub push."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dpo_core.data import transforms
from dpo_core.data.checks import CHECKS
from dpo_core.data.datasets import Dataset, get_dataset
from dpo_core.data.exporter import EXPORT_FORMATS, export_pairs, push_dataset
from dpo_core.data.importer import FORMATS, import_pairs, parse_mapping
from dpo_core.errors import DPOLabError
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC
from pages._data_common import (
    ALL,
    S,
    clear_check,
    edit_mark,
    pick,
    token_counts,
    token_model,
    workspace_store,
)
from pages._widgets import errors_shown, workspace


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
    st.button("Clear check filter", key="data_clear_check", on_click=clear_check)


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
        counts = token_counts(str(workspace().db_path), dataset.id, dataset.created, mark,
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
        pick(made.name)
        st.rerun()


def run_checks_names() -> list[str]:
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
    pick(result.dataset.name)
    st.rerun()
