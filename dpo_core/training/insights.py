"""Reading DPO curves for people: plain-language notes on worrying patterns, and what to try
after a failed run (by the job's error kind)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from .history import LiveHistory, as_history, finite, values_of

Severity = Literal["info", "warning", "error"]

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
    chosen, rejected = values_of(h, "rewards/chosen"), values_of(h, "rewards/rejected")
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
    points = finite(h.get("rewards/accuracies", []))
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
    values = values_of(h, "rewards/margins")
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
        values = values_of(h, key)
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


NOTES_POINTS = 400  # live notes read a thinned copy (trends, early logs) plus every bad value


def live_notes(live: LiveHistory) -> list[Note]:
    """`curve_notes` of a live history, on a thinned copy plus each key's first bad value;
    computed once per version of the history."""
    if live.notes_cache[0] != live.version:
        h = live.history(NOTES_POINTS)
        for key, step in live.bad.items():
            h[key] = sorted([*h[key], (step, None)], key=lambda p: p[0])
        live.notes_cache = (live.version, curve_notes(h))
    return live.notes_cache[1]
