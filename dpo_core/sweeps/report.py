"""A sweep's results: the leaderboard (trials best first), the best trial, parameter importance and
the metric per swept dataset."""

from __future__ import annotations

import statistics

from .config import SweepConfig, distributions
from .search import contains


def leaderboard(sweep: dict) -> list[dict]:
    """Trials best first (by the sweep's metric and goal), failed and pruned last.

    Columns follow a W&B sweep export: name, parameters, eval loss, eval reward accuracy, plus
    the sweep's pair accuracy, gain over the baseline, runtime, status and error.
    """
    cfg = SweepConfig.from_dict(sweep["config"])
    rows = []
    for t in sweep["trials"]:
        res, metrics = t["result"], t["result"].get("metrics", {})
        row = {"number": t["number"], "name": res.get("name") or f"{cfg.name}-{t['number']}",
               "run_id": t["run_id"] or "", "status": t["status"]}
        row |= {k: v for k, v in t["params"].items()}
        row.setdefault("dataset", res.get("dataset"))
        row |= {"eval_loss": metrics.get("eval_loss"),
                "eval_rewards/accuracies": metrics.get("eval_rewards/accuracies"),
                "pair_accuracy": res.get("pair_accuracy"),
                "baseline_accuracy": res.get("baseline_accuracy"), "gain": res.get("gain"),
                cfg.metric: t["value"] if t["status"] == "completed" else None,
                "runtime": res.get("runtime"), "error": res.get("error", "")}
        rows.append(row)
    sign = -1 if cfg.goal == "maximize" else 1

    def order(row):
        v = row.get(cfg.metric)
        return (row["status"] != "completed", v is None, sign * (v or 0.0), row["number"])

    return sorted(rows, key=order)


def best_trial(sweep: dict) -> dict | None:
    """The best completed trial's leaderboard row, or None."""
    rows = [r for r in leaderboard(sweep) if r["status"] == "completed" and r["run_id"]]
    return rows[0] if rows else None


def importance(sweep: dict) -> dict[str, float]:
    """Parameter importance: Optuna's fANOVA-free default (>= 3 completed trials), else |corr|."""
    cfg = SweepConfig.from_dict(sweep["config"])
    done = [t for t in sweep["trials"] if t["status"] == "completed" and t["value"] is not None]
    keys = [k for k in cfg.parameters if all(k in t["params"] for t in done)]
    if not done or not keys:
        return {}
    if len(done) >= 3:
        try:
            return _optuna_importance(cfg, done, keys)
        except (RuntimeError, ValueError, ZeroDivisionError):
            pass
    return _correlations(done, keys)


def _optuna_importance(cfg: SweepConfig, done: list[dict], keys: list[str]) -> dict[str, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {k: d for k, d in distributions(cfg).items() if k in keys}
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction=cfg.goal)
    for t in done:
        params = {k: t["params"][k] for k in keys}
        if all(contains(dists[k], v) for k, v in params.items()):
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                      value=t["value"]))
    return dict(optuna.importance.get_param_importances(study))


def _correlations(done: list[dict], keys: list[str]) -> dict[str, float]:
    values = [t["value"] for t in done]
    out = {}
    for k in keys:
        xs = [t["params"][k] for t in done]
        if not all(isinstance(x, (int, float)) for x in xs) or len(set(xs)) < 2 or \
                len(set(values)) < 2:
            out[k] = 0.0
            continue
        out[k] = abs(statistics.correlation([float(x) for x in xs], values))
    return out


def metric_by_dataset(sweep: dict, metric: str | None = None) -> list[dict]:
    """Metric per dataset (mean, min, max over seeds) for a sweep over datasets."""
    metric = metric or sweep["config"]["metric"]
    by: dict[str, list[float]] = {}
    for row in leaderboard(sweep):
        ds, v = row.get("dataset"), row.get(metric)
        if ds is not None and v is not None and row["status"] == "completed":
            by.setdefault(str(ds), []).append(float(v))
    return [{"dataset": ds, "mean": statistics.fmean(v), "min": min(v), "max": max(v),
             "runs": len(v)} for ds, v in by.items()]
