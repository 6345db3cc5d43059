"""Statistics of evaluation results: accuracy with a bootstrap interval."""

from __future__ import annotations

from collections.abc import Sequence


def bootstrap_ci(correct: Sequence[bool], seed: int = 0, n_boot: int = 1000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `correct` (seeded, reproducible)."""
    import numpy as np

    values = np.asarray(correct, dtype=float)
    if len(values) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def summarize_scores(scores: Sequence[tuple[float, float]], seed: int = 0,
                     n_boot: int = 1000) -> dict:
    """accuracy, ci_low, ci_high, mean_margin, n and per_pair from (chosen, rejected) scores."""
    correct = [c > r for c, r in scores]
    n = len(scores)
    low, high = bootstrap_ci(correct, seed, n_boot)
    per_pair = [{"index": i, "chosen_score": c, "rejected_score": r, "margin": c - r,
                 "correct": ok}
                for i, ((c, r), ok) in enumerate(zip(scores, correct, strict=True))]
    return {"accuracy": sum(correct) / n if n else 0.0, "ci_low": low, "ci_high": high,
            "mean_margin": sum(c - r for c, r in scores) / n if n else 0.0, "n": n,
            "per_pair": per_pair}
