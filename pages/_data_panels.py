"""The Data page's other tabs: checks, statistics, transforms (derived datasets), export and
the hub push (the import form is pages/_data_import.py)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dpo_core.data import transforms
from dpo_core.data.checks import CHECKS, length_bias
from dpo_core.data.datasets import Dataset, get_dataset
from dpo_core.data.exporter import EXPORT_FORMATS, export_pairs, push_dataset
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
from pages._widgets import ensure_routed, errors_shown, workspace

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()


# -- checks and stats -------------------------------------------------------------------------
CHECK_HELP = {
    "identical": "chosen and rejected are the same text",
    "normalized_identical": "the same words once case, punctuation and spacing are set aside",
    "empty": "a field holds no text",
    "duplicate": "the same prompt, chosen and rejected as an earlier pair",
    "near_duplicate": "MinHash-similar to an earlier pair (Jaccard ≥ 0.8), not a repeat",
    "contradiction": "the same two replies preferred both ways (A>B and B>A); Deduplicate "
                     "keeps the majority",
    "leakage": "the same prompt in two splits (train and eval)",
    "speaker_tag": "a reply lacks the speaker tag (like *CHI:) the replies carry",
    "length_imbalance": "one reply is over 4x longer than the other",
    "chosen_longer": "the chosen reply has more words (the length bias, see Stats)",
    "truncated": "a reply is cut at max_length for the model below",
}


def checks_panel(checks: dict, summary_: dict) -> None:
    st.caption("Pairs failing each check (live pairs), kept current edit by edit. Show one to "
               "filter the table to it; `python -m dpo_core data checks NAME --check CHECK` "
               "lists them too.")
    cols = st.columns(3)
    cols[0].number_input("max_length in tokens (0 = off)", min_value=0, value=0, step=64,
                         key="data_max_tokens", help="Adds the truncated check: pairs whose "
                         "reply a run with this max_length would cut, rendered for the model.")
    cols[1].number_input("max_prompt_length", min_value=0, value=0, step=64,
                         key="data_max_prompt_tokens", help="A run's prompt cut (0 = off).")
    cols[2].text_input("Model", key="data_token_model", placeholder=token_model(),
                       help=f"{DEFAULT_SPEC}, {TINY_SPEC}, run:<id>, a model folder or a hub id.")
    for name, result in checks.items():
        cols = st.columns([2, 4, 1, 1])
        cols[0].markdown(f"**{name.replace('_', ' ')}**")
        cols[1].caption(CHECK_HELP.get(name, ""))
        cols[2].markdown(f"{result['count']:,}")
        cols[3].button("Show", key=f"data_show_{name}", disabled=not result["count"],
                       on_click=lambda n=name: S.update(data_check=n))
    total = max(1, summary_["total"])
    st.caption(f"Length bias: the chosen reply is the longer one in "
               f"{checks['chosen_longer']['count'] / total:.0%} of the pairs (see Stats).")
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
    if dataset is not None:
        _length_bias(lengths, dataset)
    if dataset is None and S.get("dataset"):
        db = workspace_store()
        dataset = get_dataset(db, S["dataset"])
        mark = edit_mark(db, dataset.id)
    if dataset is not None:
        _token_histogram(summary_, dataset, mark)


def _length_bias(lengths: pd.DataFrame, dataset: Dataset) -> None:
    """How often chosen is the longer reply (all pairs), and the spread of the difference."""
    bias = length_bias(workspace_store(), dataset.id)
    difference = lengths["chosen"] - lengths["rejected"]
    st.plotly_chart(px.histogram(x=difference, nbins=60, labels={"x": "chosen − rejected (words)"},
                                 title=f"Length bias: chosen is longer in {bias['share']:.0%} of "
                                 f"the pairs ({bias['chosen_longer']:,} of {bias['pairs']:,})"),
                    key="data_bias")
    if bias["share"] > 0.6:
        st.warning("Most chosen replies are the longer ones: DPO may learn to prefer length. "
                   "Consider balancing (Checks → chosen longer).")


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
        size = st.number_input("Eval size (a fraction below 1, or a whole count)", value=0.1,
                               min_value=0.0, key="data_eval_size")
        args["eval_size"] = int(size) if size >= 1 and size == int(size) else size
        args["first"] = st.radio("How", ["random", "first N train"], key="data_split_how",
                                 horizontal=True) != "random"
    if op == "noise":
        args["flip"] = st.slider("Fraction of the train pairs to flip", 0.0, 1.0, 0.1,
                                 key="data_flip")
        args["splits"] = "all" if st.toggle(
            "Flip eval pairs too", key="data_flip_all",
            help="Off (the default): only the train split is flipped, so evaluation measures "
                 "against clean labels.") else "train"
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
        S["data_transform_msg"] = ("success", done)  # shown here, where the user is
        pick(made.name)
        st.rerun()


def run_checks_names() -> list[str]:
    return list(CHECKS)


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
