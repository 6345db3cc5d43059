"""Sections of the Evaluate page: the start form, job progress, comparison, flips, examples."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dpo_core.data.datasets import list_datasets
from dpo_core.evaluation import results
from dpo_core.evaluation.job import start_evaluation
from dpo_core.evaluation.judges import DEFAULT_JUDGE_PROMPT
from dpo_core.evaluation.scoring import METHODS, SCOPES
from dpo_core.jobs.lifecycle import cancel_job, job_status
from dpo_core.jobs.rows import ACTIVE
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC
from dpo_core.training.runs import list_runs

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
        suite_limit = int(st.number_input("Sentence pairs per suite file (0 = all)", 0, value=50,
                                              key="eval_suite_limit"))
        scope = st.radio("Score", SCOPES, horizontal=True,
                         format_func={"reply": "reply tokens", "full": "whole text"}.get, key="eval_scope")
        pairs_file = file_options()
        win = st.checkbox("Generation win rate vs the baseline", key="eval_win")
        wcols = st.columns(2)
        prompts = int(wcols[0].number_input("Win-rate prompts", 1, 500, 8, key="eval_win_prompts"))
        new_tokens = int(wcols[1].number_input("Max new tokens", 1, 256, 24, key="eval_win_tokens"))
        judge = judge_options()
        batch = int(st.number_input("Batch size", 1, 128, 16, key="eval_batch"))
    if not st.button("Start evaluation", type="primary", key="eval_start"):
        return None
    return start_evaluation(
        db, models, dataset, None if split == "all" else split, methods, scope=scope,
        limit=limit, batch_size=batch, suite=suite.strip() or None, suite_limit=suite_limit,
        win_rate={**judge, "prompts": prompts, "max_new_tokens": new_tokens} if win else None,
        **pairs_file)


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


# ---------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------
NOT_RUN = "–"  # a model x benchmark cell with no evaluation


def is_win_rate(e: dict) -> bool:
    return e["method"].startswith("win-rate")


def _percent(value) -> str:
    return NOT_RUN if value is None or pd.isna(value) else f"{value:.1%}"


def _eval_label(e: dict) -> str:
    if is_win_rate(e):
        return (f"#{e['id']} {e['model']} vs {e.get('baseline')} · {e['method']} · win rate "
                f"{_percent(e.get('win_rate'))} ({e.get('wins')}/{e.get('ties')}/"
                f"{e.get('losses')} W/T/L)")
    bench = f"{e['dataset']}/{e['split']}" if e.get("dataset") else (e.get("suite") or e["split"])
    return f"#{e['id']} {e['model']} · {e['method']} · {bench} · {_percent(e.get('accuracy'))}"


def choose_evals(db, evals: list[dict], job_id: str | None) -> list[int]:
    """The evaluations to compare: the newest job's, switched to each job as it finishes."""
    labels = {e["id"]: _eval_label(e) for e in evals}
    newest = [i for i in newest_job_evals(db, job_id) if i in labels]
    finished = bool(job_id) and job_status(db, job_id)["status"] not in ACTIVE
    if finished and newest and S.get("eval_compare_job") != job_id:
        S["eval_compare_job"], S["eval_compare"] = job_id, newest
    elif "eval_compare" not in S:
        S["eval_compare"] = newest or [e["id"] for e in evals[:2]]
    else:  # evaluations deleted since: drop them from the selection
        S["eval_compare"] = [i for i in S["eval_compare"] if i in labels]
    return st.multiselect("Evaluations to compare", list(labels), format_func=labels.get,
                          key="eval_compare", help="Any past evaluations; when a job "
                          "finishes, its evaluations are selected.")


def comparison_frame(db, eval_ids: list[int]) -> pd.DataFrame:
    rows = results.compare_evals(db, eval_ids)
    return pd.DataFrame(rows, columns=["eval_id", "model", "benchmark", "method", "accuracy",
                                       "ci_low", "ci_high", "n"])


def _cell(r) -> str:
    if r.accuracy is None or pd.isna(r.accuracy):
        return NOT_RUN
    if r.ci_low is None or pd.isna(r.ci_low):
        return _percent(r.accuracy)
    return f"{r.accuracy:.1%} [{r.ci_low:.1%}, {r.ci_high:.1%}]"


def comparison_table(frame: pd.DataFrame) -> None:
    """Model x benchmark: accuracy with its 95% interval in each cell."""
    wide = frame.assign(cell=frame.apply(_cell, axis=1),
                        bench=frame.benchmark + " · " + frame.method) \
        .pivot_table(index="model", columns="bench", values="cell", aggfunc="last", sort=False)
    st.dataframe(wide.fillna(NOT_RUN), width="stretch")
    if wide.isna().any(axis=None):
        st.caption(f"{NOT_RUN} : no evaluation of that model on that benchmark among the "
                   "selected ones (implicit-reward is skipped for a baseline: it has no "
                   "reference model of its own).")


def comparison_figure(frame: pd.DataFrame) -> dict:
    """Grouped bars (one group per benchmark, one bar per model) with the interval as error bar."""
    data = []
    for model, part in frame.groupby("model", sort=False):
        x = (part.benchmark + " · " + part.method).tolist()
        data.append({"type": "bar", "name": model, "x": x, "y": part.accuracy.tolist(),
                     "error_y": {"type": "data", "symmetric": False,
                                 "array": (part.ci_high - part.accuracy).tolist(),
                                 "arrayminus": (part.accuracy - part.ci_low).tolist()}})
    layout = {"barmode": "group", "height": 360, "title": {"text": "Accuracy (95% interval)"},
              "yaxis": {"range": [0, 1], "tickformat": ".0%"},
              "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "legend": {"orientation": "h"}}
    return {"data": data, "layout": layout}


def win_rate_frame(evals: list[dict]) -> pd.DataFrame:
    """One row per win-rate evaluation: wins, ties and losses against the baseline."""
    rows = [{"eval_id": e["id"], "model": e["model"], "baseline": e.get("baseline"),
             "judge": e["method"].split(":", 1)[-1], "wins": e.get("wins"),
             "ties": e.get("ties"), "losses": e.get("losses"), "n": e.get("n"),
             "win rate": _percent(e.get("win_rate")),
             "95% interval": f"[{_percent(e.get('ci_low'))}, {_percent(e.get('ci_high'))}]"}
            for e in evals]
    return pd.DataFrame(rows)


def comparison(db, evals: list[dict], eval_ids: list[int]) -> None:
    """Accuracies (table, chart, CSV) and, apart from them, win rates as wins/ties/losses."""
    by_id = {e["id"]: e for e in evals}
    wins = [by_id[i] for i in eval_ids if i in by_id and is_win_rate(by_id[i])]
    frame = comparison_frame(db, [i for i in eval_ids if i in by_id and not is_win_rate(by_id[i])])
    if frame.empty and not wins:
        st.info("Select evaluations to compare.")
        return
    if not frame.empty:
        comparison_table(frame)
        st.plotly_chart(comparison_figure(frame), key="eval-chart",
                        config={"displaylogo": False})
        st.download_button("Table as CSV", frame.to_csv(index=False), "evaluation.csv",
                           "text/csv", on_click="ignore", icon=":material/download:")
    if wins:
        st.markdown("**Generation win rate** (tuned vs baseline, judged per prompt)")
        st.dataframe(win_rate_frame(wins), hide_index=True, width="stretch", key="win_rates")
        st.caption("win rate = (wins + ties / 2) / n: a tie counts half a win; 50% means no "
                   "better than the baseline.")


# ---------------------------------------------------------------------------------------
# Flip analysis
# ---------------------------------------------------------------------------------------
def flips(db, evals: list[dict], selected: list[int]) -> None:
    """Pairs the baseline got wrong and the tuned model right, and the reverse."""
    pair_evals = [e for e in evals if e.get("dataset")]
    if len(pair_evals) < 2:
        st.caption("Flip analysis needs two evaluations on the same dataset.")
        return
    labels = {e["id"]: _eval_label(e) for e in pair_evals}
    ids = list(labels)
    picked = [i for i in selected if i in labels]
    a_default = picked[0] if picked else ids[-1]
    b_default = next((i for i in picked if i != a_default), ids[0])
    left, right = st.columns(2)
    a = left.selectbox("Baseline eval", ids, ids.index(a_default), format_func=labels.get,
                       key="flip_a")
    b = right.selectbox("Tuned eval", ids, ids.index(b_default), format_func=labels.get,
                        key="flip_b")
    result = results.flip_analysis(db, a, b)
    st.caption(f"{len(result['fixed'])} fixed (baseline wrong -> tuned right), "
               f"{len(result['broken'])} broken (baseline right -> tuned wrong) of "
               f"{result['compared']} compared pairs.")
    cols = st.columns([1, 2])
    which = cols[0].radio("Show", ("fixed", "broken"), horizontal=True, key="flip_which")
    text = cols[1].text_input("Filter (text contains)", key="flip_filter")
    frame = flip_frame(result[which], text)
    st.dataframe(frame, hide_index=True, width="stretch", key="flip_table")
    st.download_button("Flips as CSV", frame.to_csv(index=False), f"flips-{which}.csv",
                       "text/csv", on_click="ignore", icon=":material/download:")
    edit_link(db, a, frame)


def flip_frame(rows: list[dict], text: str = "") -> pd.DataFrame:
    cols = ["pair_id", "prompt", "chosen", "rejected", "baseline_chosen", "baseline_rejected",
            "tuned_chosen", "tuned_rejected"]
    frame = pd.DataFrame(rows, columns=cols)
    if text:
        hay = frame.prompt.fillna("") + " " + frame.chosen.fillna("") + " " + \
            frame.rejected.fillna("")
        frame = frame[hay.str.contains(text, case=False, regex=False)]
    return frame


def edit_link(db, eval_id: int, frame: pd.DataFrame) -> None:
    """Open one flipped pair in the Data page."""
    if frame.empty:
        return
    dataset = results.eval_dataset(db, eval_id)
    cols = st.columns([2, 1, 3])
    pair_id = cols[0].selectbox("Pair", frame.pair_id.tolist(), key="flip_pair")
    if cols[1].button("Edit in Data page", key="flip_edit"):
        st.session_state["dataset"] = dataset
        st.session_state["pair_id"] = int(pair_id)
        st.switch_page("pages/data.py")


# ---------------------------------------------------------------------------------------
# Win-rate examples
# ---------------------------------------------------------------------------------------
def examples(db, evals: list[dict]) -> None:
    """Prompt, baseline answer, tuned answer and verdict of a stored win rate."""
    wins = [e for e in evals if e["method"].startswith("win-rate")]
    if not wins:
        st.caption("No win-rate evaluations yet: tick the win rate in the form above.")
        return
    labels = {e["id"]: f"#{e['id']} {e['model']} vs {e.get('baseline')} · "
                       f"{e.get('win_rate', 0):.1%} ({e.get('wins')}/{e.get('ties')}/"
                       f"{e.get('losses')} W/T/L)" for e in wins}
    eval_id = st.selectbox("Win-rate evaluation", list(labels), format_func=labels.get,
                           key="win_eval")
    rows = results.result_details(db, eval_id)
    verdicts = {"a": "tuned wins", "b": "baseline wins", "tie": "tie"}
    frame = pd.DataFrame([{"prompt": r["prompt"], "baseline answer": r["baseline"],
                           "tuned answer": r["tuned"], "verdict": verdicts[r["verdict"]]}
                          for r in rows])
    st.dataframe(frame, hide_index=True, width="stretch", key="win_table")


def newest_job_evals(db, job_id: str | None) -> list[int]:
    return results.job_evals(db, job_id) if job_id else []


def stamp(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at)) if at else ""
