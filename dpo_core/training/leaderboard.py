"""Finished runs ranked for a leaderboard (the Runs page's Leaderboard tab)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from .history import number

LEADERBOARD_PARAMS = ("beta", "learning_rate", "per_device_train_batch_size",
                      "gradient_accumulation_steps", "max_steps", "loss_type", "method")


def _metric(metrics: Mapping, key: str) -> float | None:
    """A final metric under TRL's name (`eval_loss`) or W&B's (`eval/loss`)."""
    for name in (key, key.replace("eval_", "eval/", 1)):
        value = number(metrics.get(name))
        if value is not None and math.isfinite(value):
            return value
    return None


def rank_runs(runs: Iterable[Mapping]) -> list[dict]:
    """Finished runs best first: `eval_rewards/accuracies` descending, then `eval_loss` ascending.

    Each run is `{"name", "id"?, "params": {...}, "metrics": {...}, "runtime": seconds}`; rows
    come back in the shape of a W&B sweep export: name, hyper-parameters, eval loss, eval reward
    accuracy, runtime. Runs without eval metrics go last.
    """
    rows = []
    for run in runs:
        metrics, params = run.get("metrics") or {}, run.get("params") or {}
        row = {"name": run.get("name") or run.get("id", ""), "id": run.get("id", "")}
        row.update({p: params.get(p) for p in LEADERBOARD_PARAMS if p in params})
        row["eval_loss"] = _metric(metrics, "eval_loss")
        row["eval_rewards/accuracies"] = _metric(metrics, "eval_rewards/accuracies")
        row["runtime"] = number(run.get("runtime"))
        rows.append(row)

    def order(row):
        acc, loss = row["eval_rewards/accuracies"], row["eval_loss"]
        return (acc is None, -(acc or 0.0), loss is None, loss or 0.0)

    return sorted(rows, key=order)
