"""Results sections of the Evaluate page: the comparison (every number with its protocol and n),
baseline vs tuned paired tests, a suite's per-file table and plot, flips and win-rate examples.
Every CSV offered here guards formula-like cells."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dpo_core.evaluation import results
from dpo_core.jobs.lifecycle import job_status
from dpo_core.jobs.rows import ACTIVE
from pages._widgets import ensure_routed

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()

S = st.session_state
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
    return (f"#{e['id']} {e['model']} · {e['method']} ({e.get('protocol')}) · {e['benchmark']} "
            f"· {_percent(e.get('accuracy'))} n={e.get('n')}")


def choose_evals(db, evals: list[dict], job_id: str | None) -> list[int]:
    """The evaluations to compare: the newest job's, switched to each job as it finishes."""
    labels = {e["id"]: _eval_label(e) for e in evals}
    newest = [i for i in (results.job_evals(db, job_id) if job_id else []) if i in labels]
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


# ---------------------------------------------------------------------------------------
# Comparison: model x benchmark, every cell with its interval and n, the protocol in the header
# ---------------------------------------------------------------------------------------
COLUMNS = ["eval_id", "model", "benchmark", "method", "protocol", "accuracy", "ci_low",
           "ci_high", "n"]


def comparison_frame(db, eval_ids: list[int]) -> pd.DataFrame:
    """One row per number: accuracy, and acc_norm beside it for multiple choice."""
    rows = []
    for r in results.compare_evals(db, eval_ids):
        rows.append(r)
        if r.get("acc_norm") is not None:
            rows.append({**r, "method": f"{r['method']} acc_norm", "accuracy": r["acc_norm"],
                         "ci_low": r["acc_norm_ci_low"], "ci_high": r["acc_norm_ci_high"]})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["label"] = frame.benchmark + " · " + frame.method + " (" + frame.protocol + ")"
    return frame


def _cell(r) -> str:
    if r.accuracy is None or pd.isna(r.accuracy):
        return NOT_RUN
    n = "" if r.n is None or pd.isna(r.n) else f" n={int(r.n)}"
    if r.ci_low is None or pd.isna(r.ci_low):
        return _percent(r.accuracy) + n
    return f"{r.accuracy:.1%} [{r.ci_low:.1%}, {r.ci_high:.1%}]{n}"


def comparison_table(frame: pd.DataFrame) -> None:
    """Model x benchmark: accuracy with its 95% interval and n in each cell."""
    wide = frame.assign(cell=frame.apply(_cell, axis=1)) \
        .pivot_table(index="model", columns="label", values="cell", aggfunc="last", sort=False)
    st.dataframe(wide.fillna(NOT_RUN), width="stretch")
    st.caption("Each column names what was scored, the method and, in brackets, the scoring "
               "protocol; each cell the accuracy, its 95% bootstrap interval and n. "
               + " · ".join(f"{k}: {v}" for k, v in results.PROTOCOLS.items()
                            if k in set(frame.protocol)))
    if wide.isna().any(axis=None):
        st.caption(f"{NOT_RUN} : no evaluation of that model on that benchmark among the "
                   "selected ones (implicit-reward is skipped for a baseline: it has no "
                   "reference model of its own).")


def bar_figure(frame: pd.DataFrame, x: str, title: str, horizontal: bool = False) -> dict:
    """Grouped bars (one bar per model) with the 95% interval as error bar."""
    data = []
    for model, part in frame.groupby("model", sort=False):
        error = {"type": "data", "symmetric": False,
                 "array": (part.ci_high - part.accuracy).tolist(),
                 "arrayminus": (part.accuracy - part.ci_low).tolist()}
        bar = {"type": "bar", "name": model, "x": part[x].tolist(),
               "y": part.accuracy.tolist(), "error_y": error}
        if horizontal:
            bar = {**bar, "orientation": "h", "x": bar["y"], "y": bar["x"], "error_x": error}
            bar.pop("error_y")
        data.append(bar)
    axis = {"range": [0, 1], "tickformat": ".0%"}
    layout = {"barmode": "group", "title": {"text": title}, "legend": {"orientation": "h"},
              "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
              "height": max(360, 18 * frame[x].nunique() * max(1, frame.model.nunique()))
              if horizontal else 360,
              "xaxis" if horizontal else "yaxis": axis}
    return {"data": data, "layout": layout}


def win_rate_frame(evals: list[dict]) -> pd.DataFrame:
    """One row per win-rate evaluation: wins, ties and losses against the baseline."""
    rows = [{"eval_id": e["id"], "model": e["model"], "baseline": e.get("baseline"),
             "judge": e["method"].split(":", 1)[-1], "wins": e.get("wins"),
             "ties": e.get("ties"), "losses": e.get("losses"), "n": e.get("n"),
             "samples per prompt": e.get("samples", 1),
             "win rate": _percent(e.get("win_rate")),
             "95% interval": f"[{_percent(e.get('ci_low'))}, {_percent(e.get('ci_high'))}]",
             "length-controlled": _percent(e.get("lc_win_rate"))}
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
        st.plotly_chart(bar_figure(frame, "label", "Accuracy (95% interval)"), key="eval-chart",
                        config={"displaylogo": False})
        st.download_button("Table as CSV", results.csv_text(frame.to_dict("records"), COLUMNS),
                           "evaluation.csv", "text/csv", on_click="ignore",
                           icon=":material/download:")
    if wins:
        st.markdown("**Generation win rate** (tuned vs baseline, judged per prompt)")
        st.dataframe(win_rate_frame(wins), hide_index=True, width="stretch", key="win_rates")
        st.caption("win rate = (wins + ties / 2) / n: a tie counts half a win; 50% means no "
                   "better than the baseline. The interval resamples prompts (all samples of a "
                   "prompt together); the length-controlled win rate is the win rate a tuned "
                   "answer as long as the baseline's would get (a logistic fit on the length "
                   "difference), since judges favour longer answers.")


# ---------------------------------------------------------------------------------------
# Baseline vs tuned on the same pairs
# ---------------------------------------------------------------------------------------
def paired_rows(db, evals: list[dict], eval_ids: list[int]) -> list[dict]:
    """A paired test for each tuned model against the baseline, per benchmark and method."""
    groups: dict[tuple, list[dict]] = {}
    for e in (e for e in evals if e["id"] in set(eval_ids)):
        if e.get("accuracy") is not None and not is_win_rate(e):
            groups.setdefault((e["benchmark"], e["method"], e.get("protocol")), []).append(e)
    rows = []
    for (bench, method, protocol), group in groups.items():
        base = next((e for e in group if not e["model"].startswith("run:")), group[-1])
        for e in group:
            if e["model"] == base["model"]:
                continue
            t = results.paired_comparison(db, base["id"], e["id"])
            rows.append({
                "benchmark": f"{bench} · {method} ({protocol})", "n": t["n"],
                "baseline": f"{base['model']}: {_percent(t['baseline']['accuracy'])} "
                            f"[{_percent(t['baseline']['ci_low'])}, "
                            f"{_percent(t['baseline']['ci_high'])}]",
                "tuned": f"{e['model']}: {_percent(t['tuned']['accuracy'])} "
                         f"[{_percent(t['tuned']['ci_low'])}, {_percent(t['tuned']['ci_high'])}]",
                "tuned − baseline": f"{t['difference']:+.1%} [{t['ci_low']:+.1%}, "
                                    f"{t['ci_high']:+.1%}]",
                "McNemar p": f"{t['p_value']:.3g}", "fixed": t["only_b"], "broken": t["only_a"]})
    return rows


def paired(db, evals: list[dict], eval_ids: list[int]) -> None:
    rows = paired_rows(db, evals, eval_ids)
    if not rows:
        st.caption("Select a baseline and a tuned model evaluated the same way on the same "
                   "benchmark to test the difference pair by pair.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="eval_paired")
    st.caption("Both models scored the same pairs, so the difference is tested pair by pair: "
               "its 95% interval resamples pairs (both models together) and McNemar's exact "
               "test counts the pairs only one model got right (fixed, broken). It is narrower "
               "than comparing the two separate intervals.")


# ---------------------------------------------------------------------------------------
# A suite's files (paradigms)
# ---------------------------------------------------------------------------------------
FILE_COLUMNS = ["model", "method", "protocol", "file", "accuracy", "ci_low", "ci_high", "n"]


def suite_files(db, evals: list[dict], eval_ids: list[int]) -> None:
    """Per-file accuracy of the selected suite evaluations: a table and a plot."""
    ids = [e["id"] for e in evals if e["id"] in set(eval_ids) and e["method"].startswith("suite:")]
    if not ids:
        return
    frame = pd.DataFrame(results.suite_files(db, ids), columns=FILE_COLUMNS)
    if frame.empty:
        return
    st.subheader("Suite files")
    frame["model"] = frame.model + " · " + frame.method + " (" + frame.protocol + ")"
    wide = frame.assign(cell=frame.apply(_cell, axis=1)) \
        .pivot_table(index="file", columns="model", values="cell", aggfunc="last", sort=False)
    st.dataframe(wide.fillna(NOT_RUN), width="stretch", key="eval_files")
    st.plotly_chart(bar_figure(frame, "file", "Accuracy per file (95% interval)",
                               horizontal=True), key="eval-files-chart",
                    config={"displaylogo": False})
    st.download_button("Files as CSV", results.csv_text(frame.to_dict("records"), FILE_COLUMNS),
                       "suite-files.csv", "text/csv", on_click="ignore",
                       icon=":material/download:", key="eval_files_csv")


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
    a_default, b_default = results.default_flip_evals(pair_evals, selected) or (ids[-1], ids[0])
    left, right = st.columns(2)
    a = left.selectbox("Baseline eval", ids, ids.index(a_default), format_func=labels.get,
                       key="flip_a")
    b = right.selectbox("Tuned eval", ids, ids.index(b_default), format_func=labels.get,
                        key="flip_b")
    by_id = {e["id"]: e for e in pair_evals}
    warning = results.pairing_warning(by_id[a], by_id[b])
    if warning:
        st.warning(warning, icon=":material/compare_arrows:")
    result = results.flip_analysis(db, a, b)
    st.caption(f"{len(result['fixed'])} fixed (baseline wrong -> tuned right), "
               f"{len(result['broken'])} broken (baseline right -> tuned wrong) of "
               f"{result['compared']} compared pairs.")
    cols = st.columns([1, 2])
    which = cols[0].radio("Show", ("fixed", "broken"), horizontal=True, key="flip_which")
    text = cols[1].text_input("Filter (text contains)", key="flip_filter")
    frame = flip_frame(result[which], text)
    st.dataframe(frame, hide_index=True, width="stretch", key="flip_table")
    st.download_button("Flips as CSV", results.csv_text(frame.to_dict("records"), FLIP_COLUMNS),
                       f"flips-{which}.csv", "text/csv", on_click="ignore",
                       icon=":material/download:")
    edit_link(db, a, frame)


FLIP_COLUMNS = ["pair_id", "prompt", "chosen", "rejected", "baseline_chosen",
                "baseline_rejected", "tuned_chosen", "tuned_rejected"]


def flip_frame(rows: list[dict], text: str = "") -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=FLIP_COLUMNS)
    if text:
        hay = frame.prompt.fillna("") + " " + frame.chosen.fillna("") + " " + \
            frame.rejected.fillna("")
        frame = frame[hay.str.contains(text, case=False, regex=False)]
    return frame


def edit_link(db, eval_id: int, frame: pd.DataFrame) -> None:
    """Open one flipped pair in the Data page (it reads `dataset` and `pair_id`)."""
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
VERDICTS = {"a": "tuned wins", "b": "baseline wins", "tie": "tie"}


def examples(db, evals: list[dict]) -> None:
    """Prompt, baseline answer, tuned answer and verdict of a stored win rate."""
    wins = [e for e in evals if is_win_rate(e)]
    if not wins:
        st.caption("No win-rate evaluations yet: tick the win rate in the form above.")
        return
    labels = {e["id"]: _eval_label(e) for e in wins}
    eval_id = st.selectbox("Win-rate evaluation", list(labels), format_func=labels.get,
                           key="win_eval")
    rows = results.result_details(db, eval_id)
    frame = pd.DataFrame([{"prompt": r["prompt"], "sample": r.get("sample", 0),
                           "baseline answer": r["baseline"], "tuned answer": r["tuned"],
                           "verdict": VERDICTS[r["verdict"]]} for r in rows])
    if frame.empty or frame["sample"].max() == 0:  # one sample per prompt: nothing to say
        frame = frame.drop(columns="sample")
    st.dataframe(frame, hide_index=True, width="stretch", key="win_table")
