"""Sweeps: start a hyper-parameter (or dataset) sweep from a form, follow it live, and read the
leaderboard, parallel coordinates, parameter importance and metric-vs-value charts."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st
import yaml

from dpo_core.cluster.targets import target_names
from dpo_core.fields import field_help
from dpo_core.publish.model_export import export_run
from dpo_core.recipes import recipe_names, recipe_path
from dpo_core.sweeps import control, report
from dpo_core.sweeps.config import DISTRIBUTIONS, GOALS, METHODS, SweepConfig
from pages._widgets import ensure_routed, errors_shown, store

ensure_routed()

HELP = field_help(SweepConfig)
DEFAULT_PARAMS = pd.DataFrame([
    {"key": "learning_rate", "distribution": "loguniform", "values": "", "min": 1e-4, "max": 1e-2},
    {"key": "beta", "distribution": "choice", "values": "0.05, 0.1, 0.3", "min": None,
     "max": None},
])


# ---------------------------------------------------------------------------------------
# Form
# ---------------------------------------------------------------------------------------
def parameters_from_table(table: pd.DataFrame) -> dict:
    """The parameters mapping of a SweepConfig from the form's table rows."""
    out = {}
    for row in table.to_dict("records"):
        key = str(row.get("key") or "").strip()
        if not key:
            continue
        kind = row.get("distribution") or "choice"
        if kind == "choice":
            out[key] = {"values": [yaml.safe_load(v.strip())
                                   for v in str(row.get("values") or "").split(",") if v.strip()]}
        else:
            out[key] = {"distribution": kind, "min": row.get("min"), "max": row.get("max")}
    return out


def form() -> None:
    with st.form("sweep_form"):
        c = st.columns([2, 1, 1, 1])
        name = c[0].text_input("Name", "sweep", help=HELP["name"])
        base = c[1].selectbox("Base recipe", recipe_names("train"), help=HELP["base"])
        dataset = c[2].text_input("Dataset (base)", "", help="Fixes the base config's dataset; "
                                  "'' keeps the recipe's.")
        target = c[3].selectbox("Target", target_names(store()),
                                help="Where every trial trains: this machine (local) or a "
                                     "cluster target from Settings.")
        st.caption("Parameters: dotted RunConfig keys (`lora.r`) or `dataset`; choice takes "
                   "comma-separated values, the others min and max.")
        table = st.data_editor(DEFAULT_PARAMS, num_rows="dynamic", key="sweep_params",
                               column_config={"distribution": st.column_config.SelectboxColumn(
                                   options=list(DISTRIBUTIONS), required=True)})
        c = st.columns(5)
        method = c[0].selectbox("Method", METHODS, index=1, help=HELP["method"])
        metric = c[1].text_input("Metric", "eval_rewards/accuracies", help=HELP["metric"])
        goal = c[2].selectbox("Goal", GOALS, help=HELP["goal"])
        budget = c[3].number_input("Budget (runs)", 1, 500, 4, help=HELP["budget"])
        prune = c[4].number_input("Prune at step", 0, 100000, 0, help=HELP["prune_at_step"])
        fixed = st.text_input("Fixed overrides (YAML mapping)", "{max_steps: 3, eval_steps: 3}",
                              help=HELP["set"])
        submitted = st.form_submit_button("Start sweep", type="primary")
    if not submitted:
        return
    with errors_shown():
        overrides = yaml.safe_load(fixed or "{}") or {}
        if dataset.strip():
            overrides["dataset"] = dataset.strip()
        if target != "local":
            overrides["target"] = target
        cfg = SweepConfig(name=name, base=str(recipe_path("train", base)), set=overrides,
                                 parameters=parameters_from_table(table), method=method,
                                 metric=metric, goal=goal, budget=int(budget),
                                 prune_at_step=int(prune))
        st.session_state["sweep_id"] = control.start_sweep(store(), cfg)
        st.rerun()


# ---------------------------------------------------------------------------------------
# One sweep: progress, leaderboard, charts, actions
# ---------------------------------------------------------------------------------------
def pick(items: list[dict]) -> dict | None:
    if not items:
        st.info("No sweeps yet: start one above, or `python -m dpo_core sweep "
                "recipes/sweeps/tiny-random.yaml`.")
        return None
    labels = {f"{s['name']} · {s['status']} · {s['id']}": s["id"] for s in items}
    ids = list(labels.values())
    current = st.session_state.get("sweep_id")
    label = st.selectbox("Sweep", list(labels), index=ids.index(current) if current in ids else 0)
    st.session_state["sweep_id"] = labels[label]
    return next(s for s in items if s["id"] == labels[label])


@st.fragment(run_every=3.0)
def live(sweep_id: str) -> None:
    """Progress of a running sweep, refreshed every few seconds while it runs."""
    sweep = control.get_sweep(store(), sweep_id)
    cfg = sweep["config"]
    done = sum(t["status"] in control.FINAL_TRIAL for t in sweep["trials"])
    st.progress(min(1.0, done / max(1, cfg["budget"])),
                f"{sweep['status']}: {done}/{cfg['budget']} runs finished")
    if sweep["status"] not in control.RUNNING and st.session_state.get("sweep_live") == sweep_id:
        st.session_state["sweep_live"] = None
        st.rerun()  # finished: redraw the whole page once with the results


def actions(sweep: dict) -> None:
    if sweep["config"].get("source"):
        st.caption(f"Imported from {sweep['config']['source']}: a read-only leaderboard (each "
                   "row is a read-only run with its config and summary metrics).")
        return
    c = st.columns(4)
    with errors_shown():
        if sweep["status"] in ("running", "pausing"):
            if c[0].button("Pause after this run", disabled=sweep["status"] == "pausing"):
                control.pause_sweep(store(), sweep["id"])
                st.rerun()
        elif len(sweep["trials"]) < sweep["config"]["budget"]:
            if c[0].button("Resume"):
                control.resume_sweep(store(), sweep["id"])
                st.rerun()
        more = c[1].number_input("New budget", sweep["config"]["budget"] + 1, 1000,
                                 sweep["config"]["budget"] + 2, label_visibility="collapsed")
        if c[2].button("Extend budget"):
            control.extend_sweep(store(), sweep["id"], int(more))
            st.rerun()


def leaderboard_table(sweep: dict, rows: list[dict]) -> None:
    cfg = sweep["config"]
    keys = ["name", "status", *cfg["parameters"], cfg["metric"], "eval_loss",
            "eval_rewards/accuracies", "pair_accuracy", "gain", "runtime", "error", "run_id"]
    frame = pd.DataFrame(rows)
    frame = frame[[k for k in dict.fromkeys(keys) if k in frame.columns]]
    st.dataframe(frame, hide_index=True, key="sweep_board",
                 column_config={"gain": st.column_config.NumberColumn(format="%+.3f"),
                                "runtime": st.column_config.NumberColumn("runtime (s)",
                                                                         format="%.1f")})
    st.download_button("Download CSV", frame.to_csv(index=False), f"{sweep['name']}.csv",
                       "text/csv")
    if sweep["baseline"]:
        st.caption("Baseline pair accuracy: " + ", ".join(
            f"{k.split('|')[-1]} {v['accuracy']:.3f} (n={v['n']})"
            for k, v in sweep["baseline"].items()))


def parallel_figure(sweep: dict, rows: list[dict]) -> dict | None:
    """Parallel coordinates over the swept parameters and the metric (completed runs)."""
    cfg = sweep["config"]
    done = [r for r in rows if r["status"] == "completed" and r.get(cfg["metric"]) is not None]
    if len(done) < 2:
        return None
    dims = []
    for key in [*cfg["parameters"], cfg["metric"]]:
        vals = [r.get(key) for r in done]
        if all(isinstance(v, (int, float)) for v in vals):
            dims.append({"label": key, "values": vals})
        else:
            levels = sorted({str(v) for v in vals})
            dims.append({"label": key, "values": [levels.index(str(v)) for v in vals],
                         "tickvals": list(range(len(levels))), "ticktext": levels})
    metric = [r[cfg["metric"]] for r in done]
    return {"data": [{"type": "parcoords", "dimensions": dims,
                      "line": {"color": metric, "colorscale": "Viridis", "showscale": True}}],
            "layout": {"title": {"text": "Parameters and metric"}, "height": 380}}


def importance_figure(sweep: dict) -> dict | None:
    imp = report.importance(sweep)
    if not imp:
        return None
    keys = sorted(imp, key=imp.get)
    return {"data": [{"type": "bar", "orientation": "h", "x": [imp[k] for k in keys], "y": keys}],
            "layout": {"title": {"text": "Parameter importance"}, "height": 300}}


def dataset_figure(sweep: dict) -> dict | None:
    """The metric against the swept dataset (e.g. noise level), mean and range over seeds."""
    if "dataset" not in sweep["config"]["parameters"]:
        return None
    summary = report.metric_by_dataset(sweep)
    if not summary:
        return None
    xs = [s["dataset"] for s in summary]
    return {"data": [{"type": "scatter", "mode": "lines+markers", "x": xs,
                      "y": [s["mean"] for s in summary], "name": "mean",
                      "error_y": {"type": "data", "symmetric": False,
                                  "array": [s["max"] - s["mean"] for s in summary],
                                  "arrayminus": [s["mean"] - s["min"] for s in summary]}}],
            "layout": {"title": {"text": f"{sweep['config']['metric']} by dataset"},
                       "xaxis": {"title": {"text": "dataset"}}, "height": 320}}


def best_actions(sweep: dict) -> None:
    best = report.best_trial(sweep)
    if not best:
        return
    st.success(f"Best: {best['name']} (run {best['run_id']}), "
               f"{sweep['config']['metric']} = {best.get(sweep['config']['metric'])}")
    c = st.columns(3)
    if c[0].button("Open in Runs", key="best_runs"):
        st.session_state["run_id"] = best["run_id"]
        st.switch_page("pages/runs.py")
    if sweep["config"].get("source"):
        return  # an imported run has no model here to chat with or export
    if c[1].button("Chat with it", key="best_chat"):
        st.session_state["run_id"] = best["run_id"]
        st.switch_page("pages/chat.py")
    if c[2].button("Export", key="best_export"):
        with errors_shown():
            out = export_run(store(), best["run_id"], merge=True)
            st.success(f"Exported to {out['path']}")


def show_sweep(sweep: dict) -> None:
    if sweep["status"] in control.RUNNING:
        st.session_state["sweep_live"] = sweep["id"]
        live(sweep["id"])
    else:
        done = len(sweep["trials"])
        st.caption(f"{sweep['status']}: {done}/{sweep['config']['budget']} runs · "
                   f"{sweep['config']['method']} · {sweep['config']['goal']} "
                   f"{sweep['config']['metric']}")
    if sweep.get("error"):
        st.error(sweep["error"])
    actions(sweep)
    rows = report.leaderboard(sweep)
    if not rows:
        st.caption("No runs recorded yet.")
        return
    leaderboard_table(sweep, rows)
    failed = [r for r in rows if r["status"] in ("failed", "pruned")]
    for r in failed:
        st.warning(f"{r['name']} {r['status']}: {r['error']}")
    best_actions(sweep)
    charts = [("sweep_parallel", parallel_figure(sweep, rows)),
              ("sweep_importance", importance_figure(sweep)),
              ("sweep_dataset", dataset_figure(sweep))]
    for key, fig in charts:
        if fig is not None:
            st.plotly_chart(fig, key=key, config={"displaylogo": False})
    with st.expander("Sweep config (YAML)"):
        st.code(yaml.safe_dump(sweep["config"], sort_keys=False), language="yaml")
        st.code(json.dumps(sweep["baseline"], indent=2), language="json")


st.title("Sweeps")
with st.expander("New sweep", expanded=not st.session_state.get("sweep_id")):
    form()
with errors_shown():
    chosen = pick(control.list_sweeps(store()))
    if chosen:
        show_sweep(chosen)
