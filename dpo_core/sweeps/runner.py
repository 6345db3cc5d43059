"""The sweep's job: ask for the next config, start the run, wait (pruning hopeless runs at an
intermediate step), evaluate the finished run against the base model, record the trial and go
on, also when a run fails. A pause (or a cancelled job) stops it after the current run."""

from __future__ import annotations

import json
import math
import statistics
import time

from ..errors import DPOLabError
from ..evaluation.evaluate import run_evaluation
from ..jobs.lifecycle import schedule
from ..jobs.rows import FINAL
from ..store import Store, dumps, now
from ..training.metrics import last_values, value_at
from ..training.runs import cancel_run, get_run, start_run
from .config import OWN_METRICS, SweepConfig, run_config
from .control import get_sweep, list_trials, set_sweep
from .search import suggest

POLL_S = 1.0


def run_sweep_job(config: dict, ctx) -> dict:
    """Background job target: run trials until the budget is used or a pause is asked for."""
    store, sweep_id = ctx.store, config["sweep_id"]
    cfg = SweepConfig.from_dict(get_sweep(store, sweep_id)["config"])
    _recover(store, sweep_id, cfg)
    while True:
        sweep = get_sweep(store, sweep_id)
        cfg = SweepConfig.from_dict(sweep["config"])  # extend may have raised the budget
        trials = sweep["trials"]
        ctx.progress(len(trials), cfg.budget, sweep_id=sweep_id)
        if len(trials) >= cfg.budget:
            ok = any(t["status"] == "completed" for t in trials)
            set_sweep(store, sweep_id, status="completed" if ok else "failed")
            return {"sweep_id": sweep_id, "trials": len(trials), "completed": ok}
        if ctx.cancelled() or sweep["status"] == "pausing":
            set_sweep(store, sweep_id, status="paused")
            return {"sweep_id": sweep_id, "trials": len(trials), "paused": True}
        run_trial(store, cfg, sweep_id, len(trials), trials)


def _recover(store: Store, sweep_id: str, cfg: SweepConfig) -> None:
    """Trials left 'running' by a stopped job: wait for their run, or mark them failed."""
    for t in list_trials(store, sweep_id):
        if t["status"] != "running":
            continue
        if t["run_id"]:
            _finish_trial(store, cfg, sweep_id, t["number"], t["run_id"])
        else:
            _record(store, sweep_id, t["number"], "failed", None,
                    {"error": "The sweep stopped before this run started."})


def run_trial(store: Store, cfg: SweepConfig, sweep_id: str, number: int,
              trials: list[dict]) -> dict:
    """Suggest, start, wait, evaluate and record one trial; a failure is recorded, not raised."""
    params = suggest(cfg, trials, number)
    with store.write() as conn:
        conn.execute("INSERT INTO sweep_trials(sweep_id, number, params_json, status) "
                     "VALUES(?,?,?,?)", (sweep_id, number, dumps(params), "running"))
    try:
        run_id = start_run(store, run_config(cfg, params, number))
    except DPOLabError as exc:
        return _record(store, sweep_id, number, "failed", None, {"error": str(exc)})
    with store.write() as conn:
        conn.execute("UPDATE sweep_trials SET run_id=? WHERE sweep_id=? AND number=?",
                     (run_id, sweep_id, number))
    return _finish_trial(store, cfg, sweep_id, number, run_id)


def _finish_trial(store: Store, cfg: SweepConfig, sweep_id: str, number: int,
                  run_id: str) -> dict:
    run = _wait_or_prune(store, cfg, sweep_id, run_id)
    runtime = (run["finished"] or now()) - (run["started"] or run["created"])
    result = {"metrics": last_values(store, run_id), "runtime": runtime}
    if run["status"] == "pruned":
        return _record(store, sweep_id, number, "pruned", None, result | {
            "error": f"Pruned at step {cfg.prune_at_step}: {cfg.prune_metric} worse than the "
                     "median of the finished runs."})
    if run["status"] != "completed":
        error = (run.get("error_text") or run["status"]).strip().splitlines()
        return _record(store, sweep_id, number, "failed", None,
                       result | {"error": error[0] if error else run["status"],
                                 "error_kind": run.get("error_kind") or ""})
    try:
        result |= evaluate_trial(store, cfg, sweep_id, get_run(store, run_id))
    except DPOLabError as exc:
        result["eval_error"] = str(exc)
    value = trial_value(cfg.metric, result)
    return _record(store, sweep_id, number, "completed", value, result)


def _record(store: Store, sweep_id: str, number: int, status: str, value, result: dict) -> dict:
    value = value if value is None or math.isfinite(value) else None
    with store.write() as conn:
        conn.execute("UPDATE sweep_trials SET status=?, value=?, gain_json=? "
                     "WHERE sweep_id=? AND number=?",
                     (status, value, dumps(result), sweep_id, number))
    return {"number": number, "status": status, "value": value, **result}


def trial_value(metric: str, result: dict) -> float | None:
    """The trial's objective: the sweep's own evaluation, else the last logged value."""
    if metric in OWN_METRICS:
        return result.get(metric)
    return result["metrics"].get(metric)


def _wait_or_prune(store: Store, cfg: SweepConfig, sweep_id: str, run_id: str) -> dict:
    """Wait for the run; with pruning on, cancel it at prune_at_step if it is below median."""
    checked = not cfg.prune_at_step
    while True:
        schedule(store)
        run = get_run(store, run_id)
        if run["status"] in FINAL:
            return run
        if not checked:
            value = value_at(store, run_id, cfg.prune_metric, cfg.prune_at_step)
            if value is not None:
                checked = True
                if _below_median(store, cfg, sweep_id, value):
                    cancel_run(store, run_id)
                    return {**get_run(store, run_id), "status": "pruned"}
        time.sleep(POLL_S)


def _below_median(store: Store, cfg: SweepConfig, sweep_id: str, value: float) -> bool:
    """True when `value` is worse than the median of completed trials at the pruning step."""
    others = [value_at(store, t["run_id"], cfg.prune_metric, cfg.prune_at_step)
              for t in list_trials(store, sweep_id) if t["status"] == "completed" and t["run_id"]]
    others = [v for v in others if v is not None]
    if len(others) < 2:
        return False  # too few finished runs to call one hopeless
    median = statistics.median(others)
    lower_better = "loss" in cfg.prune_metric
    return value > median if lower_better else value < median


def baseline(store: Store, cfg: SweepConfig, sweep_id: str, dataset: str, model: str) -> dict:
    """Pair accuracy of the base model on a dataset's eval split: computed once, stored."""
    known = get_sweep(store, sweep_id)["baseline"]
    key = f"{model}|{dataset}"
    if key in known:
        return known[key]
    summary = run_evaluation(store, model, dataset, cfg.eval_split, ("mean-logp",),
                             limit=cfg.eval_limit or None)[0]
    entry = {k: summary[k] for k in ("accuracy", "ci_low", "ci_high", "n", "eval_id")}
    with store.write() as conn:  # read-modify-write inside one transaction
        raw = conn.execute("SELECT baseline_json FROM sweeps WHERE id=?",
                           (sweep_id,)).fetchone()[0]
        conn.execute("UPDATE sweeps SET baseline_json=? WHERE id=?",
                     (dumps({**json.loads(raw or "{}"), key: entry}), sweep_id))
    return entry


def evaluate_trial(store: Store, cfg: SweepConfig, sweep_id: str, run: dict) -> dict:
    """The run's pair accuracy on the eval split, the baseline's, and the gain."""
    dataset = cfg.eval_dataset or run["config"]["dataset"]
    model = run["config"]["model"]
    base = baseline(store, cfg, sweep_id, dataset, model)
    summary = run_evaluation(store, f"run:{run['id']}", dataset, cfg.eval_split, ("mean-logp",),
                             limit=cfg.eval_limit or None)[0]
    return {"pair_accuracy": summary["accuracy"], "baseline_accuracy": base["accuracy"],
            "gain": summary["accuracy"] - base["accuracy"], "eval_id": summary["eval_id"],
            "dataset": dataset}
