"""Runs: every run with its status and key metrics, a live view of one run, compare, leaderboard,
and import of an external training log.

The live view reads the store incrementally: metric rows already seen stay in session state, and
each tick fetches only rows with a higher id, so a refresh costs the same at step 50 and 5,000.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from dpo_core.jobs.lifecycle import log_tail, schedule
from dpo_core.jobs.rows import ACTIVE
from dpo_core.publish.space_export import export_space
from dpo_core.sweeps.imported import import_sweep_export, is_runs_table
from dpo_core.training import insights
from dpo_core.training.external_logs import FORMATS, import_training_log
from dpo_core.training.history import LiveHistory
from dpo_core.training.leaderboard import rank_runs
from dpo_core.training.metrics import last_values_of, read_metrics, read_samples
from dpo_core.training.runs import (
    best_note,
    cancel_run,
    delete_run,
    get_run,
    list_runs,
    resume_run,
    time_left,
)
from pages import _charts as charts
from pages._train_plan import launched_plan
from pages._widgets import ensure_routed, errors_shown, go_to, store, workspace

ensure_routed()

STATUS_ICON = {"queued": ":material/schedule:", "running": ":material/play_circle:",
               "completed": ":material/check_circle:", "failed": ":material/error:",
               "cancelled": ":material/stop_circle:", "lost": ":material/help:"}


# ---------------------------------------------------------------------------------------
# Incremental metric cache: st.session_state["metrics:<run>"] = {live, status, steps_at}
# ---------------------------------------------------------------------------------------
def history(run: dict) -> LiveHistory:
    """The run's metrics, fetching only rows newer than the last one seen."""
    cache_key = f"metrics:{run['id']}"
    entry = st.session_state.get(cache_key)
    resumed = entry and entry["status"] not in ACTIVE and run["status"] in ACTIVE
    if entry is None or resumed:  # a resume deletes rows past its checkpoint: start over
        entry = {"live": LiveHistory(), "steps_at": {}}
    entry["status"] = run["status"]
    rows = read_metrics(store(), run["id"], after_id=entry["live"].last_id)
    entry["live"].add(rows)
    for row in rows:
        if row["key"] == "loss":
            entry["steps_at"][row["step"]] = row["at"]
    if len(entry["steps_at"]) > 50:  # throughput needs only the last few
        entry["steps_at"] = dict(sorted(entry["steps_at"].items())[-20:])
    st.session_state[cache_key] = entry
    return entry["live"]


def throughput(run: dict) -> float | None:
    """Steps per second over the last logs, from when `loss` rows were written."""
    entry = st.session_state.get(f"metrics:{run['id']}") or {}
    recent = sorted((entry.get("steps_at") or {}).items())[-10:]
    if len(recent) < 2 or recent[-1][1] <= recent[0][1]:
        return None
    return (recent[-1][0] - recent[0][0]) / (recent[-1][1] - recent[0][1])


# ---------------------------------------------------------------------------------------
# The runs table and its actions
# ---------------------------------------------------------------------------------------
def runs_table(runs: list[dict]) -> pd.DataFrame:
    finals = last_values_of(store(), [r["id"] for r in runs])
    rows = []
    for r in runs:
        cfg, m = r["config"], finals.get(r["id"], {})
        end = r["finished"] or (time.time() if r["status"] in ACTIVE and r["started"] else None)
        rows.append({
            "run": r["id"], "name": r["name"], "status": status_label(r),
            "model": cfg.get("model", cfg.get("source", "")),
            "dataset": cfg.get("dataset", ""),
            "progress": r["step"] / r["total_steps"] if r["total_steps"] else 0.0,
            "step": f"{r['step']}/{r['total_steps']}", "loss": m.get("loss"),
            "eval_loss": m.get("eval_loss"),
            "eval_rewards/accuracies": m.get("eval_rewards/accuracies"),
            "started": pd.to_datetime(r["started"] or r["created"], unit="s"),
            "duration": _duration(end - r["started"]) if end and r["started"] else ""})
    table = pd.DataFrame(rows)
    for col in ("loss", "eval_loss", "eval_rewards/accuracies"):
        table[col] = pd.to_numeric(table[col])  # None -> NaN: shown as an empty cell
    return table


def status_label(run: dict) -> str:
    """The status as a person reads it: a queued run says its place in line."""
    queue = run.get("queue")
    return f"queued #{queue['position']}" if queue else run["status"]


def queue_note(run: dict) -> str:
    """What a queued run waits for, in a sentence."""
    queue = run["queue"]
    holders = ", ".join(f"`{i}`" for i in queue["running"]) or "a free slot"
    ahead = (f" after {len(queue['ahead'])} queued run(s) ahead of it"
             if queue["ahead"] else "")
    return f"Queued #{queue['position']}: starts when {holders} finishes{ahead}."


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def actions(run: dict) -> None:
    """Stop / resume / clone / delete for the selected run (delete asks first)."""
    cols = st.columns(4)
    with errors_shown():
        if cols[0].button("Stop", disabled=run["status"] not in ACTIVE, icon=":material/stop:"):
            cancel_run(store(), run["id"], wait=False)
            st.toast("Stopping: the run finishes its step and writes a checkpoint.")
        can_resume = run["status"] in ("failed", "cancelled", "lost") and not run["read_only"]
        if cols[1].button("Resume", disabled=not can_resume, icon=":material/play_arrow:"):
            resume_run(store(), run["id"])
            st.rerun()
        if cols[2].button("Clone", disabled=bool(run["read_only"]), icon=":material/content_copy:"):
            go_to("pages/train.py", clone_run_id=run["id"])  # in the live fragment
        if cols[3].button("Delete", disabled=run["status"] in ACTIVE, icon=":material/delete:"):
            st.session_state["confirm_delete"] = run["id"]
        if st.session_state.get("confirm_delete") == run["id"]:
            st.warning(f"Delete run **{run['name']}** (`{run['id']}`): its metrics, samples and "
                       "its folder (checkpoints, final model)? This cannot be undone.")
            yes, no = st.columns(2)
            if yes.button("Yes, delete", type="primary"):
                delete_run(store(), run["id"])
                st.session_state.pop("confirm_delete", None)
                st.session_state.pop(f"metrics:{run['id']}", None)
                st.rerun()
            if no.button("Keep it"):
                st.session_state.pop("confirm_delete", None)
                st.rerun()


# ---------------------------------------------------------------------------------------
# Export a completed run as a Hugging Face Space folder (the `export-space` verb)
# ---------------------------------------------------------------------------------------
def space_export(run: dict) -> None:
    """A button that writes <workspace>/exports/<run>-space, then how to run or push it."""
    if run["status"] != "completed" or run["kind"] == "external":
        return
    out = workspace().exports / f"{run['id']}-space"
    with st.expander("Export as Space", icon=":material/rocket:",
                     expanded=(out / "app.py").is_file()):
        st.caption("A Gradio app with the baseline and this run side by side, with vote buttons; "
                   "it runs locally and deploys as a Hugging Face Space.")
        if st.button("Export as Space", key=f"space:{run['id']}", icon=":material/ios_share:"):
            with errors_shown(), st.spinner("Writing the Space folder ..."):
                result = export_space(store(), run["id"], out, overwrite=True)
                st.success(f"Wrote {len(result.files)} files.")
                if result.note:
                    st.info(result.note, icon=":material/cloud_download:")
        if not (out / "app.py").is_file():
            return
        st.markdown(f"Space folder: `{out}`")
        st.caption("Run it locally (http://127.0.0.1:7860):")
        st.code(f"cd {out}\npip install -r requirements.txt\npython app.py", language="bash")
        st.caption("Push it to a Space (needs HF_TOKEN with write access and network):")
        st.code(f"python -m dpo_core export-space {run['id']} --out {out} --force "
                "--push USER/SPACE-NAME", language="bash")


# ---------------------------------------------------------------------------------------
# The run view
# ---------------------------------------------------------------------------------------
def run_view(run_id: str) -> None:
    run = get_run(store(), run_id)
    h = history(run)
    progress_panel(run)
    launched_plan(run)
    if run["status"] in ("failed", "lost"):
        first = (run["error_text"] or "No error text recorded.").strip().splitlines()[0]
        st.error(f"**{run['status'].capitalize()}** ({run['error_kind'] or 'unknown'}): {first}")
        st.info(f"**What to try:** {insights.failure_advice(run['error_kind'])}")
    for note in insights.live_notes(h, run["config"]):
        show = st.error if note.severity == "error" else st.warning
        show(f"**{note.headline()}.** {note.text}\n\n**Try:** {note.fix}")
    smoothing = st.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key=f"smooth:{run_id}",
                          help="Exponential moving average, as in TensorBoard (0 = raw).")
    figs = {
        "loss": charts.metric_figure(h, "loss", smoothing, "loss (train, eval dashed)"),
        "rewards/margins": charts.metric_figure(h, "rewards/margins", smoothing),
        "rewards/accuracies": charts.metric_figure(h, "rewards/accuracies", smoothing),
        "rewards": charts.pair_figure(h, "rewards", smoothing),
        "logps": charts.pair_figure(h, "logps", smoothing),
        "grad_norm": charts.metric_figure(h, "grad_norm", smoothing),
        "learning_rate": charts.metric_figure(h, "learning_rate", 0.0),
    }
    left, right = st.columns(2)
    for i, (name, fig) in enumerate(figs.items()):
        with left if i % 2 == 0 else right:
            charts.show(fig, key=f"chart:{run_id}:{name}")
    pick = st.selectbox("Export chart", list(figs), key=f"export:{run_id}")
    charts.export_buttons(figs[pick], h.history, f"{run['name']}-{pick.replace('/', '-')}",
                          key=f"export:{run_id}")
    samples_panel(run)
    if run["run_dir"]:
        with st.expander("Log (tail of worker.log)"):
            st.code(log_tail(run["run_dir"], 40) or "(empty)", language=None)
    if run["status"] in ACTIVE:
        schedule(store())


def progress_panel(run: dict) -> None:
    status, step, total = run["status"], run["step"], run["total_steps"]
    st.subheader(f"{STATUS_ICON.get(status, '')} {run['name']} · {status}")
    if run["kind"] == "external":
        st.caption(f"Imported log (read-only) from `{run['config'].get('source', '')}`.")
        return
    st.progress(min(1.0, step / total) if total else 0.0, text=f"step {step}/{total or '?'}{run['where']}")
    if run.get("queue"):
        st.info(queue_note(run), icon=":material/schedule:")
    rate = throughput(run)
    live = st.session_state[f"metrics:{run['id']}"]["live"]
    tokens = (live.values.get("tokens/s") or [None])[-1]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Steps/s", f"{rate:.2f}" if rate else "–")
    c2.metric("Tokens/s", f"{tokens:.0f}" if tokens else "–")
    left, how = time_left(run)
    c3.metric("Time left", _duration(left) if left and status in ACTIVE else "–",
              help="From the measured step time; before the first steps, the estimate made at "
                   "launch." if how != "estimated" else "Estimated at launch; the measured step "
                   "time replaces it after the first steps.",
              delta="estimate" if how == "estimated" and status in ACTIVE else None,
              delta_color="off")
    beat = run.get("heartbeat_age")
    c4.metric("Heartbeat", f"{beat:.0f}s ago" if beat is not None and status in ACTIVE else "–")
    if run.get("warning"):
        st.warning(run["warning"], icon=":material/heart_broken:")
    if best_note(run):
        st.success(best_note(run), icon=":material/workspace_premium:")


def samples_panel(run: dict) -> None:
    """Each sample prompt's answer at a chosen step next to the answer before training (step 0,
    the baseline), written as a person reads them."""
    samples = read_samples(store(), run["id"])
    with st.expander(f"Sample generations ({len(samples)})"):
        steps = sorted({s["step"] for s in samples}, reverse=True)
        if not steps:
            st.caption("No samples yet: the model's answers are written before training (the "
                       "baseline), every `sample_every` steps and at the end.")
            return
        later = [s for s in steps if s] or steps
        step = st.selectbox("Step", later, key=f"sample_step:{run['id']}")
        before = {s["prompt"]: s["completion"] for s in samples if s["step"] == 0}
        for s in (s for s in samples if s["step"] == step):
            st.caption("Prompt")
            st.text(s["prompt"][-600:])
            left, right = st.columns(2)
            left.caption("Before training (baseline)")
            left.text(before.get(s["prompt"], "(not sampled: a run from before baselines)"))
            right.caption(f"Step {step}")
            right.text(s["completion"])


# ---------------------------------------------------------------------------------------
# Compare, leaderboard, import
# ---------------------------------------------------------------------------------------
def compare_tab(runs: list[dict]) -> None:
    """Overlaid curves of the picked runs. The picks and the metric live in session state of
    their own: a new run in the list changes the widgets' options, never the user's choice."""
    labels = {r["id"]: f"{r['name']} ({r['id']})" for r in runs}
    kept = st.session_state.setdefault(
        "compare_picks", [st.session_state["run_id"]] if st.session_state.get("run_id") in labels
        else [])
    picked = st.multiselect("Runs", list(labels), default=[i for i in kept if i in labels],
                            format_func=labels.get)
    st.session_state["compare_picks"] = picked
    if not picked:
        st.caption("Pick runs to overlay their curves.")
        return
    by_id = {r["id"]: r for r in runs}
    histories = {labels[i]: history(by_id[i]) for i in picked}
    keys = sorted({k for h in histories.values() for k in h.keys()})
    if not keys:
        st.caption("These runs have no metrics yet.")
        return
    wanted = st.session_state.get("compare_metric", "loss")
    key = st.selectbox("Metric", keys, index=keys.index(wanted) if wanted in keys else 0)
    st.session_state["compare_metric"] = key
    smoothing = st.slider("Smoothing ", 0.0, 0.99, 0.6, 0.01, key="compare-smooth")
    fig = charts.compare_figure(histories, key, smoothing)
    charts.show(fig, key="compare-chart")
    def merged() -> dict:
        return {f"{label}:{key}": h.history()[key] for label, h in histories.items()
                if key in h.steps}

    charts.export_buttons(fig, merged, f"compare-{key.replace('/', '-')}", key="compare")


def leaderboard_tab(runs: list[dict]) -> None:
    finals = last_values_of(store(), [r["id"] for r in runs])
    done = [{"id": r["id"], "name": r["name"], "params": r["config"],
             "metrics": finals.get(r["id"], {}),
             "runtime": (r["finished"] - r["started"]) if r["finished"] and r["started"] else None}
            for r in runs if r["status"] == "completed"]
    if not done:
        st.caption("No finished runs yet.")
        return
    st.caption("Finished runs, best first: `eval_rewards/accuracies` (higher), then `eval_loss`.")
    st.dataframe(pd.DataFrame(rank_runs(done)), hide_index=True)


def import_tab() -> None:
    st.caption(f"Accepted: {FORMATS}. The log becomes a read-only run. A W&B runs table (a "
               "sweep's Export CSV: Name, State, config and summary columns) becomes an imported "
               "sweep with its leaderboard on the Sweeps page.")
    with st.form("import-log"):
        upload = st.file_uploader("Log file", type=["csv", "tsv", "json", "jsonl"])
        path = st.text_input("... or a path on this machine")
        name = st.text_input("Run name")
        submitted = st.form_submit_button("Import")
    if not submitted:
        return
    with errors_shown():
        if upload is not None:
            target = workspace().cache / "imports" / Path(upload.name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(upload.getvalue())
        elif path.strip():
            target = Path(path.strip()).expanduser()
        else:
            st.error("Choose a file or type a path.")
            return
        if is_runs_table(target):
            result = import_sweep_export(store(), target, name.strip() or None)
            st.session_state["sweep_id"] = result["sweep_id"]
            st.switch_page("pages/sweeps.py")
        run_id = import_training_log(store(), target, name.strip() or None)
        st.session_state["run_id"] = run_id
        st.success(f"Imported as run `{run_id}`.")
        st.rerun()


# ---------------------------------------------------------------------------------------
def runs_tab() -> None:
    """The runs table, the run picker, its actions and its view: one unit, so that everything
    shows the same moment of a run (redrawn every 2 s while any run is queued or running)."""
    runs = list_runs(store())
    if not runs:
        st.info("No runs yet. Start one on the Train page, or import a training log.")
        st.page_link("pages/train.py", label="Train", icon=":material/model_training:")
        return
    st.dataframe(runs_table(runs), hide_index=True, column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1),
        "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm")})
    ids = [r["id"] for r in runs]
    names = {r["id"]: f"{r['name']} ({r['id']}) · {status_label(r)}" for r in runs}
    wanted = st.session_state.get("run_id")  # set by a pick here, or by another page
    if wanted in ids:
        st.session_state["runs_pick"] = wanted
    elif st.session_state.get("runs_pick") not in ids:
        st.session_state["runs_pick"] = ids[0]
    run_id = st.selectbox("Run", ids, format_func=names.get, key="runs_pick",
                          on_change=lambda: st.session_state.update(
                              run_id=st.session_state["runs_pick"]))
    st.session_state["run_id"] = run_id
    selected = next(r for r in runs if r["id"] == run_id)
    actions(selected)
    space_export(selected)
    run_view(run_id)
    if not any(r["status"] in ACTIVE for r in runs) and st.session_state.get("runs_live"):
        st.session_state["runs_live"] = False
        st.rerun()  # the last run ended: one full redraw (the sidebar's jobs, the other tabs)


st.title("Runs")
with errors_shown():
    schedule(store())  # marks dead jobs lost, launches queued runs
runs = list_runs(store())
tab_runs, tab_compare, tab_board, tab_import = st.tabs(
    ["Runs", "Compare", "Leaderboard", "Import log"])
with tab_runs:
    live = any(r["status"] in ACTIVE for r in runs)
    st.session_state["runs_live"] = live
    st.fragment(runs_tab, run_every=2 if live else None)()
with tab_compare:
    compare_tab(runs)
with tab_board:
    leaderboard_tab(runs)
with tab_import:
    import_tab()
