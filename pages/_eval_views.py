"""Sections of the Evaluate page: the start form and the job's progress (the results are in
pages/_eval_results.py)."""

from __future__ import annotations

import streamlit as st

from dpo_core.data.datasets import list_datasets
from dpo_core.evaluation.job import start_evaluation
from dpo_core.evaluation.judges import DEFAULT_JUDGE_PROMPT
from dpo_core.evaluation.scoring import METHODS, SCOPES
from dpo_core.evaluation.suites import (
    DEFAULT_SUITE_METHOD,
    DEFAULT_SUITE_PROTOCOL,
    SUITE_PROTOCOLS,
)
from dpo_core.jobs.lifecycle import cancel_job, job_status
from dpo_core.jobs.rows import ACTIVE
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC
from dpo_core.training.runs import list_runs
from pages._widgets import ensure_routed

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()

JUDGE_LABELS = {"lexicon": "Offline lexicon (VADER sentiment, no network)",
                "reward-model": "Reward model (sequence-classification spec)",
                "llm": "LLM judge (causal model spec + prompt)"}
FILE_LABELS = {"pairs": "pairs (chosen vs rejected)", "choices": "multiple choice (HellaSwag)"}
S = st.session_state
SPLITS = ("eval", "train", "all")
METHOD_HELP = ("mean-logp / sum-logp: the reply's mean or summed log-probability, chosen must "
               "beat rejected. implicit-reward: beta * (log pi - log pi_ref), the quantity of "
               "TRL's rewards/accuracies (runs only; skipped for the baseline).")


# ---------------------------------------------------------------------------------------
# Start form
# ---------------------------------------------------------------------------------------
def _run_label(run: dict) -> str:
    return f"run:{run['id']}" + (f" ({run['name']})" if run["name"] != run["id"] else "")


def choose_models(db) -> list[str]:
    """Baseline first, then the chosen runs and any extra specs (checkpoint folders)."""
    runs = [r for r in list_runs(db, status="completed") if r["kind"] == "train"]
    labels = {f"run:{r['id']}": _run_label(r) for r in runs}
    bases = list(dict.fromkeys([*(r["config"].get("model") for r in runs if r["config"].get("model")),
                                TINY_SPEC, DEFAULT_SPEC]))
    left, right = st.columns(2)
    baseline = left.selectbox("Baseline model", bases, accept_new_options=True,
                              help="The base model (a builtin, a hub id or a folder).",
                              key="eval_baseline")
    chosen = right.multiselect("Runs to compare", list(labels), default=list(labels)[:1],
                               format_func=labels.get, help="Completed training runs.",
                               key="eval_runs")
    extra = st.text_input("More models (optional)", placeholder="run:<id> or a checkpoint folder, "
                          "comma-separated", help="Any model spec, e.g. runs/<id>/checkpoint-2.", key="eval_extra")
    return [baseline, *chosen, *(s.strip() for s in extra.split(",") if s.strip())]


def run_dataset(db, models: list[str]) -> tuple[str, str, str] | None:
    """(run spec, training dataset, eval split) of the first run among the models."""
    configs = {f"run:{r['id']}": r["config"] for r in list_runs(db, status="completed")}
    for spec in models:
        cfg = configs.get(spec) or {}
        if cfg.get("dataset"):
            return spec, cfg["dataset"], cfg.get("eval_split") or "eval"
    return None


def default_dataset(db, models: list[str], names: list[str]) -> None:
    """Point the dataset at the chosen run's training data (its eval split) whenever the run
    changes, until the user picks a dataset themselves."""
    found = run_dataset(db, models)
    if S.get("eval_dataset_picked") or not found or found[1] not in names:
        return
    if S.get("eval_dataset_for") != found[0] or "eval_dataset" not in S:
        S["eval_dataset_for"], S["eval_dataset"] = found[0], found[1]
        S["eval_split"] = found[2] if found[2] in SPLITS else "eval"


def _picked_dataset() -> None:
    S["eval_dataset_picked"] = True


def start_form(db) -> str | None:
    """The evaluation form; returns a new job id when Start was pressed."""
    models = choose_models(db)
    names = [d["name"] for d in list_datasets(db)]
    default_dataset(db, models, names)
    cols = st.columns([2, 1, 2, 1])
    dataset = cols[0].selectbox("Dataset", names, index=None if not names else 0,
                                key="eval_dataset", on_change=_picked_dataset,
                                persist_state="session",
                                help="Defaults to the chosen run's training dataset.")
    split = cols[1].selectbox("Split", SPLITS, key="eval_split", persist_state="session")
    methods = cols[2].multiselect("Methods", METHODS, default=["mean-logp"], help=METHOD_HELP,
                                 key="eval_methods")
    limit = int(cols[3].number_input("Pairs (0 = all)", 0, value=200, key="eval_limit"))
    with st.expander("Suite, win rate and scoring options"):
        suite = st.text_input("BLiMP-layout suite folder (optional)",
                              placeholder="../shared/data/blimp",
                              help="A folder of .txt files alternating good and bad sentences.",
                              key="eval_suite")
        suite_options = suite_scoring()
        scope = st.radio("Score", SCOPES, horizontal=True,
                         format_func={"reply": "reply tokens", "full": "whole text"}.get, key="eval_scope")
        pairs_file = file_options()
        win = st.checkbox("Generation win rate vs the baseline", key="eval_win")
        wcols = st.columns(3)
        prompts = int(wcols[0].number_input("Win-rate prompts", 1, 500, 8, key="eval_win_prompts"))
        samples = int(wcols[1].number_input(
            "Samples per prompt", 1, 16, 1, key="eval_win_samples",
            help="Each model answers every prompt this many times (seeds seed, seed+1, ...); "
                 "the interval resamples prompts."))
        new_tokens = int(wcols[2].number_input("Max new tokens", 1, 256, 24, key="eval_win_tokens"))
        judge = judge_options()
        batch = int(st.number_input("Batch size", 1, 128, 16, key="eval_batch"))
    if not st.button("Start evaluation", type="primary", key="eval_start"):
        return None
    return start_evaluation(
        db, models, dataset, None if split == "all" else split, methods, scope=scope,
        limit=limit, batch_size=batch, suite=suite.strip() or None, **suite_options,
        win_rate={**judge, "prompts": prompts, "samples": samples, "max_new_tokens": new_tokens}
        if win else None,
        **pairs_file)


SUITE_METHODS = ("sum-logp", "mean-logp")


def suite_scoring() -> dict:
    """Pairs per file, the method and the protocol a suite is scored with."""
    cols = st.columns([1, 1, 2])
    limit = int(cols[0].number_input("Sentence pairs per suite file (0 = all)", 0, value=50,
                                     key="eval_suite_limit"))
    method = cols[1].selectbox("Suite scoring", SUITE_METHODS,
                               index=SUITE_METHODS.index(DEFAULT_SUITE_METHOD),
                               key="eval_suite_method",
                               help="sum-logp compares whole-sentence log-probabilities, "
                                    "lm-evaluation-harness's BLiMP accuracy; mean-logp divides "
                                    "by the number of tokens.")
    protocol = cols[2].radio("Suite protocol", list(SUITE_PROTOCOLS), horizontal=True,
                             index=list(SUITE_PROTOCOLS).index(DEFAULT_SUITE_PROTOCOL),
                             format_func=lambda p: p, key="eval_suite_protocol",
                             help=" · ".join(f"{k}: {v}" for k, v in SUITE_PROTOCOLS.items()))
    return {"suite_limit": limit, "suite_method": method, "suite_protocol": protocol}


def file_options() -> dict:
    """The multiple-choice / pairs file method: a TRL JSON path, scored as pairs or choices."""
    path = st.text_input("Multiple-choice / pairs file (optional)",
                         placeholder="../shared/data/hellaswag-noise/val-1.json",
                         help="A JSON list of {prompt, chosen, rejected}. HellaSwag-layout "
                              "prompts can also be scored as multiple choice (best choice wins).",
                         key="eval_file")
    cols = st.columns([2, 1, 1])
    kinds = cols[0].multiselect("Score the file as", list(FILE_LABELS), default=["pairs"],
                                format_func=FILE_LABELS.get, key="eval_file_as")
    method = cols[1].selectbox("File scoring", ("mean-logp", "sum-logp"), key="eval_file_method")
    limit = int(cols[2].number_input("Records (0 = all)", 0, value=200, key="eval_file_limit"))
    if not path.strip():
        return {}
    return {"pairs_file": path.strip(), "file_as": kinds, "file_method": method,
            "file_limit": limit}


def judge_options() -> dict:
    """The win-rate judge: offline lexicon (default), a reward model, or an LLM with a prompt."""
    kind = st.selectbox("Win-rate judge", list(JUDGE_LABELS), format_func=JUDGE_LABELS.get,
                        key="eval_judge")
    if kind == "lexicon":
        return {"judge": "lexicon"}
    spec = st.text_input("Judge model", placeholder="a folder, hub id or builtin:...",
                         help="reward model: a sequence-classification model (one score); "
                              "LLM judge: any causal model spec.", key="eval_judge_model")
    out = {"judge": kind, "judge_model": spec.strip()}
    if kind == "llm":
        out["judge_template"] = st.text_area(
            "Judge prompt", DEFAULT_JUDGE_PROMPT, key="eval_judge_prompt",
            help="Use {prompt}, {a} and {b}; the judge is asked in both orders and must prefer "
                 "the same reply both times for a win (position bias cancels).")
    return out


# ---------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------
@st.fragment(run_every=2)
def progress_panel(db, job_id: str) -> None:
    """The job's progress read from the store; cancel; a full rerun once it finishes."""
    job = job_status(db, job_id)
    done, total, r = job["step"] or 0, job["total_steps"] or 0, job["result"]
    st.caption(f"Job `{job['id']}` · {job['status']}")
    st.progress(min(done / total, 1.0) if total else 0.0, text=r.get("message", "starting ..."))
    for note in r.get("skipped", []):
        st.caption(f"Skipped: {note}")
    if job["status"] in ACTIVE:
        if st.button("Cancel", key="eval-cancel"):
            cancel_job(db, job_id, wait=False)
    elif job["status"] != "completed" and job["error_text"]:
        st.error(job["error_text"][-1500:])
    if job["status"] not in ACTIVE and st.session_state.get("eval_shown") != job_id:
        st.session_state["eval_shown"] = job_id  # results below were drawn before it finished
        st.rerun(scope="app")


