"""Reading DPO curves for people: plain-language notes on worrying patterns, TensorBoard-style
smoothing, and the leaderboard of finished runs.

A history is `{key: [(step, value), ...]}` with TRL's keys verbatim (`loss`, `rewards/chosen`,
`eval_loss`, ...), or a DataFrame: long (`step`, `key`, `value` columns, as the metrics table
holds them) or wide (a `step` column and one column per key, as TRL's metrics CSV).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["info", "warning", "error"]
History = Mapping[str, list[tuple[float, float | None]]]

# Thresholds, chosen so a healthy sigmoid-loss run (loss 0.69 -> 0.3, margins 0 -> ~2) stays quiet.
LOSS_FLOOR = 0.02           # sigmoid DPO loss this close to 0 means every pair is separated
MARGIN_LIMIT = 10.0         # rewards/margins beyond this (in beta-scaled nats) is runaway
MARGIN_GROWTH = 5.0         # ... or the late margin is this many times the early one (and > 3)
EARLY_FRACTION = 0.3        # "early" = the first 30% of the logged steps
MIN_POINTS = 4              # below this many logged values a trend is noise


@dataclass(frozen=True)
class Note:
    """One observation about a run's curves: how bad, what it means, and what to try."""

    severity: Severity
    key: str
    title: str
    text: str
    fix: str

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# History shapes
# ---------------------------------------------------------------------------------------
def as_history(history) -> dict[str, list[tuple[float, float | None]]]:
    """Normalise a dict or a long/wide DataFrame to {key: [(step, value), ...]} sorted by step."""
    if hasattr(history, "columns"):
        history = _frame_to_history(history)
    out: dict[str, list[tuple[float, float | None]]] = {}
    for key, points in dict(history).items():
        clean = [(float(s), _number(v)) for s, v in points]
        out[str(key)] = sorted(clean, key=lambda p: p[0])
    return out


def _frame_to_history(frame) -> dict:
    if "step" not in frame.columns:
        raise ValueError("a metrics DataFrame needs a 'step' column")
    if {"key", "value"} <= set(frame.columns):  # long: one row per (step, key)
        out: dict[str, list] = {}
        for step, key, value in zip(frame["step"], frame["key"], frame["value"], strict=True):
            out.setdefault(key, []).append((step, value))
        return out
    return {col: [(s, v) for s, v in zip(frame["step"], frame[col], strict=True) if not _blank(v)]
            for col in frame.columns if col != "step"}


def _blank(value) -> bool:
    """A wide frame's empty cell (a key not logged at that step): NaN there means 'missing'."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value) -> float | None:
    """A float, or None for a missing value (the store keeps NaN/inf as NULL)."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _finite(points) -> list[tuple[float, float]]:
    return [(s, v) for s, v in points if v is not None and math.isfinite(v)]


def _values(history: dict, key: str) -> list[float]:
    return [v for _, v in _finite(history.get(key, []))]


# ---------------------------------------------------------------------------------------
# Smoothing
# ---------------------------------------------------------------------------------------
def smooth(values: Iterable[float | None], weight: float) -> list[float | None]:
    """Exponential moving average with TensorBoard's debiasing; weight 0 returns the values.

    Non-finite values pass through unchanged and do not disturb the average.
    """
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out: list[float | None] = []
    last, count = 0.0, 0
    for value in values:
        if value is None or not math.isfinite(value):
            out.append(value)
            continue
        last = last * weight + (1 - weight) * value
        count += 1
        out.append(last / (1 - weight ** count))  # debias: early points are not pulled to 0
    return out


# ---------------------------------------------------------------------------------------
# Notes on curves
# ---------------------------------------------------------------------------------------
def curve_notes(history) -> list[Note]:
    """Plain-language notes for the patterns that call for attention; [] for a healthy run."""
    h = as_history(history)
    notes: list[Note] = []
    for check in (_non_finite, _both_rewards_falling, _accuracy_pinned, _margins_exploding,
                  _loss_near_zero):
        notes.extend(check(h))
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(notes, key=lambda n: order[n.severity])


def _non_finite(h: dict) -> list[Note]:
    bad = []
    for key, points in h.items():
        steps = [s for s, v in points if v is None or not math.isfinite(v)]
        if steps:
            bad.append((key, int(steps[0])))
    if not bad:
        return []
    keys = ", ".join(f"`{k}` (first at step {s})" for k, s in bad[:4])
    return [Note("error", bad[0][0], "NaN or infinite values",
                 f"Some logged values are NaN or infinite: {keys}. Training has diverged or a "
                 "batch produced an invalid loss; later numbers cannot be trusted.",
                 "Lower learning_rate (e.g. by 10x), use fp32 or bf16 instead of fp16, and check "
                 "the data for empty chosen/rejected replies.")]


def _trend(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last third of the values (robust to single noisy logs)."""
    third = max(1, len(values) // 3)
    return sum(values[:third]) / third, sum(values[-third:]) / third


def _both_rewards_falling(h: dict) -> list[Note]:
    chosen, rejected = _values(h, "rewards/chosen"), _values(h, "rewards/rejected")
    if len(chosen) < MIN_POINTS or len(rejected) < MIN_POINTS:
        return []
    c0, c1 = _trend(chosen)
    r0, r1 = _trend(rejected)
    if not (c1 < c0 and r1 < r0 and c1 < 0 and r1 < 0):
        return []
    return [Note("warning", "rewards/chosen", "Both rewards are falling",
                 f"`rewards/chosen` fell from {c0:.3g} to {c1:.3g} and `rewards/rejected` from "
                 f"{r0:.3g} to {r1:.3g}: the model is moving away from both answers, not towards "
                 "the chosen one. The margin can still grow while the chosen replies become less "
                 "likely than before training.",
                 "Lower learning_rate or raise beta to stay closer to the reference; check that "
                 "chosen replies look like what the model would write (same prompt format); "
                 "fewer epochs.")]


def _accuracy_pinned(h: dict) -> list[Note]:
    points = _finite(h.get("rewards/accuracies", []))
    if len(points) < MIN_POINTS:
        return []
    early = points[: max(3, int(len(points) * EARLY_FRACTION))]
    values = [v for _, v in early]
    if all(v >= 0.999 for v in values):
        return [Note("warning", "rewards/accuracies", "Accuracy pinned at 1.0 from the start",
                     f"`rewards/accuracies` is 1.0 for all of the first {len(values)} logs: the "
                     "model already tells chosen from rejected on every pair, so there is little "
                     "to learn. Often the pairs differ by an easy tell (length, format, a fixed "
                     "phrase) or train pairs leak into the eval split.",
                     "Look at the data checks (length and format tells, duplicates), use harder "
                     "pairs, or evaluate on a held-out split.")]
    if all(v <= 0.001 for v in values):
        return [Note("warning", "rewards/accuracies", "Accuracy pinned at 0.0 from the start",
                     f"`rewards/accuracies` is 0.0 for all of the first {len(values)} logs: the "
                     "model prefers the rejected reply on every pair. Chosen and rejected are "
                     "probably swapped, or the prompt format hides the difference.",
                     "Check that the chosen column holds the preferred replies (the data import "
                     "mapping) and that the prompt format matches the model.")]
    return []


def _margins_exploding(h: dict) -> list[Note]:
    values = _values(h, "rewards/margins")
    if len(values) < MIN_POINTS:
        return []
    early, late = _trend(values)
    runaway = late > MARGIN_LIMIT or (late > 3 and late > MARGIN_GROWTH * max(abs(early), 1e-9))
    if not runaway:
        return []
    return [Note("warning", "rewards/margins", "Margins are exploding",
                 f"`rewards/margins` grew from {early:.3g} to {late:.3g}. Margins this large mean "
                 "the policy has drifted far from the reference (over-optimisation); generations "
                 "often degrade even though the loss looks great.",
                 "Lower learning_rate, raise beta, train fewer steps, or try loss_type ipo, "
                 "which bounds the margin.")]


def _loss_near_zero(h: dict) -> list[Note]:
    notes = []
    for key, split in (("loss", "train"), ("eval_loss", "eval")):
        values = _values(h, key)
        if len(values) < MIN_POINTS:
            continue
        _, late = _trend(values)
        if late < LOSS_FLOOR:
            notes.append(Note(
                "warning", key, f"The {split} loss is close to 0",
                f"`{key}` is about {late:.2g} (a coin flip is 0.69): every pair is separated with "
                "a wide margin. On train pairs this is overfitting; on eval pairs too, the pair "
                "set is probably degenerate (chosen and rejected differ by an easy tell).",
                "Add pairs, train fewer epochs, raise beta, and look at the data checks for "
                "length/format tells."))
    return notes


# ---------------------------------------------------------------------------------------
# Final values and the leaderboard
# ---------------------------------------------------------------------------------------
LEADERBOARD_PARAMS = ("beta", "learning_rate", "per_device_train_batch_size",
                      "gradient_accumulation_steps", "max_steps", "loss_type", "method")


def final_values(history) -> dict[str, float | None]:
    """The last logged value of every key."""
    return {k: points[-1][1] for k, points in as_history(history).items() if points}


def _metric(metrics: Mapping, key: str) -> float | None:
    """A final metric under TRL's name (`eval_loss`) or W&B's (`eval/loss`)."""
    for name in (key, key.replace("eval_", "eval/", 1)):
        value = _number(metrics.get(name))
        if value is not None and math.isfinite(value):
            return value
    return None


def leaderboard(runs: Iterable[Mapping]) -> list[dict]:
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
        row["runtime"] = _number(run.get("runtime"))
        rows.append(row)

    def order(row):
        acc, loss = row["eval_rewards/accuracies"], row["eval_loss"]
        return (acc is None, -(acc or 0.0), loss is None, loss or 0.0)

    return sorted(rows, key=order)


def _param(text: str):
    """A hyper-parameter cell as int, float or text, whichever it is."""
    value = _number(text)
    if value is None:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def sweep_runs_from_csv(path) -> list[dict]:
    """Rows of a W&B sweep export (one run per row) as `leaderboard` input."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    runs = []
    for rec in records:
        params = {p: _param(rec[p]) for p in LEADERBOARD_PARAMS if p in rec}
        metrics = {k: rec[k] for k in rec if k.startswith("eval/")}
        runs.append({"name": rec.get("Name", ""), "params": params, "metrics": metrics,
                     "runtime": rec.get("Runtime")})
    return runs


# ---------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------
FAILURE_ADVICE = {
    "oom": "The run ran out of memory. Try method lora, a smaller per_device_train_batch_size "
           "with more gradient_accumulation_steps, gradient_checkpointing, a shorter max_length, "
           "or precompute_ref_log_probs (full fine-tuning).",
    "data": "The pairs could not be used. Open the dataset on the Data page, run its checks, "
            "and fix or drop the rows they name.",
    "config": "A setting was refused. Clone the run, fix the field named in the error, launch.",
    "model": "The model could not be loaded. Check the model spec (folder, hub id or builtin:...) "
             "and that the folder holds safetensors weights and a tokenizer.",
    "unknown": "Read the log tail below for the first error line; resume the run after fixing "
               "it (it continues from the last complete checkpoint).",
}


def failure_advice(error_kind: str) -> str:
    """What to try after a failed run, by the worker's error kind."""
    return FAILURE_ADVICE.get(error_kind or "unknown", FAILURE_ADVICE["unknown"])


# ---------------------------------------------------------------------------------------
# Reading final values from the store (for run tables and the leaderboard)
# ---------------------------------------------------------------------------------------
SUMMARY_KEYS = ("loss", "rewards/accuracies", "rewards/margins", "eval_loss",
                "eval_rewards/accuracies", "eval_rewards/margins")


def latest_metrics(store, keys: Iterable[str] = SUMMARY_KEYS) -> dict[str, dict[str, float]]:
    """{run_id: {key: last written value}} for the given keys, for every run.

    One indexed lookup per run and key (metrics_last index), so the cost does not grow with the
    number of logged steps."""
    keys = list(keys)
    out: dict[str, dict[str, float]] = {}
    for run in store.query("SELECT id FROM runs"):
        for key in keys:
            row = store.query_one("SELECT value FROM metrics WHERE run_id=? AND key=? "
                                  "ORDER BY id DESC LIMIT 1", (run["id"], key))
            if row is not None:
                out.setdefault(run["id"], {})[key] = row["value"]
    return out


# ---------------------------------------------------------------------------------------
# A run's metrics held in memory for a live view: extended with new rows only
# ---------------------------------------------------------------------------------------
class LiveHistory:
    """Metric rows of one run, extended with rows newer than `last_id`; smoothing and thinning
    cost O(new rows + points drawn), so a refresh at step 5,000 costs what it costs at step 50."""

    NOTES_POINTS = 400  # notes read a thinned copy (trends, early logs) plus every bad value

    def __init__(self) -> None:
        self.last_id = 0
        self.version = 0
        self.steps: dict[str, list[float]] = {}
        self.values: dict[str, list[float | None]] = {}
        self._index: dict[str, dict[float, int]] = {}
        self._smooth: dict[tuple[str, float], tuple[list, float, int]] = {}
        self.bad: dict[str, float] = {}  # key -> first step with a NaN/inf/NULL value
        self._notes: tuple[int, list[Note]] = (-1, [])

    @classmethod
    def from_history(cls, history) -> LiveHistory:
        live = cls()
        live.add({"id": 0, "key": k, "step": s, "value": v}
                 for k, points in as_history(history).items() for s, v in points)
        return live

    def add(self, rows: Iterable[Mapping]) -> int:
        """Take metric rows (id, key, step, value); a rewritten step replaces its old value."""
        n = 0
        for row in rows:
            key, step, value = row["key"], float(row["step"]), _number(row["value"])
            steps = self.steps.setdefault(key, [])
            values = self.values.setdefault(key, [])
            index = self._index.setdefault(key, {})
            if step in index:
                values[index[step]] = value
                self._forget(key)
            elif not steps or step > steps[-1]:
                index[step] = len(steps)
                steps.append(step)
                values.append(value)
            else:  # out of order (rare): insert and rebuild this key's index
                i = bisect.bisect(steps, step)
                steps.insert(i, step)
                values.insert(i, value)
                self._index[key] = {s: j for j, s in enumerate(steps)}
                self._forget(key)
            if value is None or not math.isfinite(value):
                self.bad[key] = min(step, self.bad.get(key, step))
            self.last_id = max(self.last_id, int(row.get("id") or 0))
            n += 1
        if n:
            self.version += 1
        return n

    def _forget(self, key: str) -> None:
        for cached in [c for c in self._smooth if c[0] == key]:
            del self._smooth[cached]

    def keys(self) -> list[str]:
        return sorted(self.steps)

    def smoothed(self, key: str, weight: float) -> list[float | None]:
        """`smooth(values, weight)`, extended from where the last call stopped (EMA is causal)."""
        values = self.values.get(key, [])
        if not weight:
            return values
        out, last, count = self._smooth.get((key, weight), ([], 0.0, 0))
        for value in values[len(out):]:
            if value is None or not math.isfinite(value):
                out.append(value)
                continue
            last = last * weight + (1 - weight) * value
            count += 1
            out.append(last / (1 - weight ** count))
        self._smooth[(key, weight)] = (out, last, count)
        return out

    def thinned(self, key: str, weight: float = 0.0, limit: int = 250) -> tuple[list, list]:
        """(steps, values) with at most ~`limit` points, smoothed with `weight` first."""
        steps, values = self.steps.get(key, []), self.smoothed(key, weight)
        stride = max(1, -(-len(steps) // limit))
        xs, ys = steps[::stride], values[::stride]
        if steps and xs[-1] != steps[-1]:
            xs, ys = xs + [steps[-1]], ys + [values[-1]]
        return xs, ys

    def history(self, limit: int | None = None) -> dict[str, list[tuple[float, float | None]]]:
        """{key: [(step, value), ...]}: every point, or a thinned copy with `limit`."""
        if limit is None:
            return {k: list(zip(self.steps[k], self.values[k], strict=True)) for k in self.steps}
        return {k: list(zip(*self.thinned(k, 0.0, limit), strict=True)) for k in self.steps}

    def notes(self) -> list[Note]:
        """`curve_notes` on a thinned copy (plus the first bad value of each key), once per
        version."""
        if self._notes[0] != self.version:
            h = self.history(self.NOTES_POINTS)
            for key, step in self.bad.items():
                h[key] = sorted([*h[key], (step, None)], key=lambda p: p[0])
            self._notes = (self.version, curve_notes(h))
        return self._notes[1]
