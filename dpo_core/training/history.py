"""Metric histories: `{key: [(step, value), ...]}` from dicts or DataFrames (long or wide),
TensorBoard-style smoothing, final values, and `LiveHistory`, a run's metrics held in memory and
extended with new rows only (a live view's refresh costs the same at step 50 and 5,000).

Keys are TRL's verbatim (`loss`, `rewards/chosen`, `eval_loss`, ...).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

History = Mapping[str, list[tuple[float, float | None]]]


# ---------------------------------------------------------------------------------------
# History shapes
# ---------------------------------------------------------------------------------------
def as_history(history) -> dict[str, list[tuple[float, float | None]]]:
    """Normalise a dict or a long/wide DataFrame to {key: [(step, value), ...]} sorted by step."""
    if hasattr(history, "columns"):
        history = _frame_to_history(history)
    out: dict[str, list[tuple[float, float | None]]] = {}
    for key, points in dict(history).items():
        clean = [(float(s), number(v)) for s, v in points]
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


def number(value) -> float | None:
    """A float, or None for a missing value (the store keeps NaN/inf as NULL)."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def finite(points) -> list[tuple[float, float]]:
    return [(s, v) for s, v in points if v is not None and math.isfinite(v)]


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
# A run's metrics held in memory for a live view: extended with new rows only
# ---------------------------------------------------------------------------------------
class LiveHistory:
    """Metric rows of one run, extended with rows newer than `last_id`; smoothing and thinning
    cost O(new rows + points drawn), so a refresh at step 5,000 costs what it costs at step 50."""


    def __init__(self) -> None:
        self.last_id = 0
        self.version = 0
        self.steps: dict[str, list[float]] = {}
        self.values: dict[str, list[float | None]] = {}
        self._index: dict[str, dict[float, int]] = {}
        self._smooth: dict[tuple[str, float], tuple[list, float, int]] = {}
        self.bad: dict[str, float] = {}  # key -> first step with a NaN/inf/NULL value
        self.notes_cache: tuple[int, list] = (-1, [])  # (version, notes): insights.live_notes

    def add(self, rows: Iterable[Mapping]) -> int:
        """Take metric rows (id, key, step, value); a rewritten step replaces its old value."""
        n = 0
        for row in rows:
            key, step, value = row["key"], float(row["step"]), number(row["value"])
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
