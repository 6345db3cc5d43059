"""Reading DPO curves for people: plain-language notes on worrying patterns, and what to try
after a failed run (by the job's error kind)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from .history import LiveHistory, as_history, finite

Severity = Literal["info", "warning", "error"]

# Thresholds, chosen so a healthy sigmoid-loss run (loss 0.69 -> 0.3, margins 0 -> ~2) stays quiet.
LOSS_FLOOR = 0.02           # sigmoid DPO loss this close to 0 means every pair is separated
MARGIN_LIMIT = 10.0         # rewards/margins beyond this (in beta-scaled nats) is runaway
MARGIN_GROWTH = 5.0         # ... or the late margin is this many times the early one (and > 3)
EARLY_FRACTION = 0.3        # "early" = the first 30% of the logged steps
MIN_POINTS = 4              # below this many logged values a trend is noise
MIN_EVAL_POINTS = 3         # evaluations (each on the same held-out pairs) needed for a trend
OVERFIT_RISE = 0.05         # eval loss this far above its best (and OVERFIT_FRACTION of it) ...
OVERFIT_FRACTION = 0.1      # ... while the train loss falls is overfitting
STUCK_SPREAD = 0.02         # eval accuracy within this of 0.5 at every evaluation is "stuck"
LOW_ACCURACY_MARGIN = 0.02  # eval accuracy below 0.5 by more than this is "below a coin"
DISPLACEMENT_NATS = 1.0     # chosen log-probs this far (or DISPLACEMENT_FRACTION) below start
DISPLACEMENT_FRACTION = 0.05
SPIKE_WINDOW = 5            # grad norm above SPIKE_FACTOR x the median of the previous logs
SPIKE_FACTOR = 10.0
WARMUP_REACHED = 0.5        # a peak learning rate under half the configured one never warmed up


@dataclass(frozen=True)
class Note:
    """One observation about a run's curves: how bad, what it means, what to try, and the step
    where it started (None when it is about the run as a whole)."""

    severity: Severity
    key: str
    title: str
    text: str
    fix: str
    step: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def headline(self) -> str:
        """The title with where it started: 'Overfitting (from step 120)'."""
        return self.title if self.step is None else f"{self.title} (from step {self.step})"


# ---------------------------------------------------------------------------------------
# Notes on curves
# ---------------------------------------------------------------------------------------
def curve_notes(history, config: dict | None = None) -> list[Note]:
    """Plain-language notes for the patterns that call for attention; [] for a healthy run.

    `config` (the run's settings, optional) sharpens two notes: `beta` for the margins and
    `learning_rate` for the warm-up."""
    h = as_history(history)
    config = config or {}
    notes: list[Note] = []
    for check in CHECKS:
        notes.extend(check(h, config))
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(notes, key=lambda n: (order[n.severity], n.step if n.step is not None else -1))


def _non_finite(h: dict, _config: dict) -> list[Note]:
    bad = []
    for key, points in h.items():
        steps = [s for s, v in points if v is None or not math.isfinite(v)]
        if steps:
            bad.append((key, int(steps[0])))
    if not bad:
        return []
    bad.sort(key=lambda b: b[1])
    keys = ", ".join(f"`{k}` (first at step {s})" for k, s in bad[:4])
    return [Note("error", bad[0][0], "NaN or infinite values",
                 f"Some logged values are NaN or infinite: {keys}. Training has diverged or a "
                 "batch produced an invalid loss; later numbers cannot be trusted.",
                 "Lower learning_rate (e.g. by 10x), use fp32 or bf16 instead of fp16, and check "
                 "the data for empty chosen/rejected replies.", bad[0][1])]


def _trend(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last third of the values (robust to single noisy logs)."""
    third = max(1, len(values) // 3)
    return sum(values[:third]) / third, sum(values[-third:]) / third


def _holds_since(points: list[tuple[float, float]], test) -> int | None:
    """The step from which `test(value)` holds to the last point; None when the last fails."""
    start = None
    for s, v in points:
        start = (start if start is not None else s) if test(v) else None
    return None if start is None else int(start)


def _both_rewards_falling(h: dict, _config: dict) -> list[Note]:
    chosen, rejected = finite(h.get("rewards/chosen", [])), finite(h.get("rewards/rejected", []))
    if len(chosen) < MIN_POINTS or len(rejected) < MIN_POINTS:
        return []
    c0, c1 = _trend([v for _, v in chosen])
    r0, r1 = _trend([v for _, v in rejected])
    if not (c1 < c0 and r1 < r0 and c1 < 0 and r1 < 0):
        return []
    return [Note("warning", "rewards/chosen", "Both rewards are falling",
                 f"`rewards/chosen` fell from {c0:.3g} to {c1:.3g} and `rewards/rejected` from "
                 f"{r0:.3g} to {r1:.3g}: the model is moving away from both answers, not towards "
                 "the chosen one. The margin can still grow while the chosen replies become less "
                 "likely than before training.",
                 "Lower learning_rate or raise beta to stay closer to the reference; check that "
                 "chosen replies look like what the model would write (same prompt format); "
                 "fewer epochs, or add an SFT term on the chosen replies (rpo_alpha).",
                 _holds_since(chosen, lambda v: v < 0))]


def _accuracy_pinned(h: dict, _config: dict) -> list[Note]:
    points = finite(h.get("rewards/accuracies", []))
    if len(points) < MIN_POINTS:
        return []
    early = points[: max(3, int(len(points) * EARLY_FRACTION))]
    values = [v for _, v in early]
    first = int(points[0][0])
    if all(v >= 0.999 for v in values):
        return [Note("warning", "rewards/accuracies", "Accuracy pinned at 1.0 from the start",
                     f"`rewards/accuracies` is 1.0 for all of the first {len(values)} logs: the "
                     "model already tells chosen from rejected on every pair, so there is little "
                     "to learn. Often the pairs differ by an easy tell (length, format, a fixed "
                     "phrase) or train pairs leak into the eval split.",
                     "Look at the data checks (length and format tells, duplicates), use harder "
                     "pairs, or evaluate on a held-out split.", first)]
    if all(v <= 0.001 for v in values):
        return [Note("warning", "rewards/accuracies", "Accuracy pinned at 0.0 from the start",
                     f"`rewards/accuracies` is 0.0 for all of the first {len(values)} logs: the "
                     "model prefers the rejected reply on every pair. Chosen and rejected are "
                     "probably swapped, or the prompt format hides the difference.",
                     "Check that the chosen column holds the preferred replies (the data import "
                     "mapping) and that the prompt format matches the model.", first)]
    return []


def _margins_exploding(h: dict, config: dict) -> list[Note]:
    points = finite(h.get("rewards/margins", []))
    if len(points) < MIN_POINTS:
        return []
    early, late = _trend([v for _, v in points])
    runaway = late > MARGIN_LIMIT or (late > 3 and late > MARGIN_GROWTH * max(abs(early), 1e-9))
    if not runaway:
        return []
    beta = config.get("beta")
    scale = (f" With beta {beta:g} that is a log-probability gap of about {late / beta:.3g} "
             "nats between chosen and rejected, measured against the reference."
             if isinstance(beta, (int, float)) and beta > 0 else "")
    limit = min(MARGIN_LIMIT, max(3.0, MARGIN_GROWTH * abs(early)))
    return [Note("warning", "rewards/margins", "Margins are exploding",
                 f"`rewards/margins` grew from {early:.3g} to {late:.3g}.{scale} Margins this "
                 "large mean the policy has drifted far from the reference (over-optimisation); "
                 "generations often degrade even though the loss looks great.",
                 "Lower learning_rate, raise beta, train fewer steps, or try loss_type ipo, "
                 "which bounds the margin.", _holds_since(points, lambda v: v > limit))]


def _loss_near_zero(h: dict, _config: dict) -> list[Note]:
    notes = []
    for key, split in (("loss", "train"), ("eval_loss", "eval")):
        points = finite(h.get(key, []))
        if len(points) < MIN_POINTS:
            continue
        _, late = _trend([v for _, v in points])
        if late < LOSS_FLOOR:
            notes.append(Note(
                "warning", key, f"The {split} loss is close to 0",
                f"`{key}` is about {late:.2g} (a coin flip is 0.69): every pair is separated with "
                "a wide margin. On train pairs this is overfitting; on eval pairs too, the pair "
                "set is probably degenerate (chosen and rejected differ by an easy tell).",
                "Add pairs, train fewer epochs, raise beta, and look at the data checks for "
                "length/format tells.", _holds_since(points, lambda v: v < 2 * LOSS_FLOOR)))
    return notes


def _overfitting(h: dict, _config: dict) -> list[Note]:
    """Eval loss rising from its best while the train loss keeps falling."""
    evals, train = finite(h.get("eval_loss", [])), finite(h.get("loss", []))
    if len(evals) < MIN_EVAL_POINTS or len(train) < MIN_POINTS:
        return []
    best_step, best = min(evals, key=lambda p: p[1])
    last = evals[-1][1]
    after = [v for s, v in train if s >= best_step]
    before = [v for s, v in train if s <= best_step] or [train[0][1]]
    falling = bool(after) and sum(after) / len(after) < sum(before) / len(before)
    if not (falling and last > best + max(OVERFIT_RISE, OVERFIT_FRACTION * best)):
        return []
    return [Note("warning", "eval_loss", "Overfitting: eval loss rises while train loss falls",
                 f"`eval_loss` was lowest ({best:.3g}) at step {int(best_step)} and is {last:.3g} "
                 "now, while the train loss kept falling: the model is memorising the train "
                 "pairs instead of learning the preference.",
                 "Keep the checkpoint from the best step (load_best_model_at_end with "
                 "metric_for_best_model eval_loss), stop early (early_stopping_patience), train "
                 "fewer epochs, raise beta or add pairs.", int(best_step))]


def _eval_accuracy_low(h: dict, _config: dict) -> list[Note]:
    points = finite(h.get("eval_rewards/accuracies", []))
    if len(points) < MIN_EVAL_POINTS:
        return []
    values = [v for _, v in points]
    if max(values) - min(values) <= STUCK_SPREAD and abs(values[-1] - 0.5) <= STUCK_SPREAD:
        return [Note("warning", "eval_rewards/accuracies", "Eval accuracy stuck at 0.5",
                     f"`eval_rewards/accuracies` stayed at {values[-1]:.2f} for all {len(values)} "
                     "evaluations: the model does not tell chosen from rejected on held-out "
                     "pairs any better than a coin. Either it is not learning at all or what it "
                     "learns on train pairs does not carry over.",
                     "Check the learning rate (not 0, warm-up finished), that chosen and rejected "
                     "differ (data checks: identical pairs), and that the eval split comes from "
                     "the same kind of pairs as the train split.", int(points[0][0]))]
    if values[-1] < 0.5 - LOW_ACCURACY_MARGIN:
        return [Note("warning", "eval_rewards/accuracies", "Eval accuracy below 0.5",
                     f"`eval_rewards/accuracies` is {values[-1]:.2f}: on held-out pairs the model "
                     "now prefers the rejected reply more often than the chosen one, worse than a "
                     "coin flip.",
                     "If the train accuracy is high this is overfitting: keep an earlier "
                     "checkpoint, train fewer steps, raise beta. If it was low from the start, "
                     "check that the eval split is labelled the same way as the train split.",
                     _holds_since(points, lambda v: v < 0.5))]
    return []


def _eval_margins_negative(h: dict, _config: dict) -> list[Note]:
    points = finite(h.get("eval_rewards/margins", []))
    if len(points) < MIN_EVAL_POINTS or points[-1][1] >= 0:
        return []
    return [Note("warning", "eval_rewards/margins", "Eval margins are negative",
                 f"`eval_rewards/margins` is {points[-1][1]:.3g}: on held-out pairs the rejected "
                 "replies gained more probability than the chosen ones since training began.",
                 "Compare with the train margins: if those grow, the model overfits the train "
                 "pairs (fewer steps, higher beta, more pairs); if both are negative, check the "
                 "chosen/rejected mapping.", _holds_since(points, lambda v: v < 0))]


def _likelihood_displacement(h: dict, _config: dict) -> list[Note]:
    """Chosen log-probs falling below where they started, on the fixed eval set when there is
    one (comparable from eval to eval), else on the trend of the train batches."""
    key = "eval_logps/chosen" if len(finite(h.get("eval_logps/chosen", []))) >= MIN_EVAL_POINTS \
        else "logps/chosen"
    points = finite(h.get(key, []))
    if len(points) < (MIN_EVAL_POINTS if key.startswith("eval") else MIN_POINTS):
        return []
    values = [v for _, v in points]
    start, now = (values[0], values[-1]) if key.startswith("eval") else _trend(values)
    drop = max(DISPLACEMENT_NATS, DISPLACEMENT_FRACTION * abs(start))
    if now > start - drop:
        return []
    return [Note("warning", key, "Chosen replies are becoming less likely",
                 f"`{key}` fell from {start:.4g} to {now:.4g}: the model gives the chosen replies "
                 "less probability than before training (likelihood displacement). The margin "
                 "can still grow because the rejected replies fall faster, but generations drift "
                 "away from the preferred answers.",
                 "Lower learning_rate or raise beta; add an SFT term on the chosen replies "
                 "(rpo_alpha, e.g. 1.0) or try loss_type apo_zero, which pushes chosen up.",
                 _holds_since(points, lambda v: v < start - drop))]


def _grad_norm_spikes(h: dict, _config: dict) -> list[Note]:
    points = finite(h.get("grad_norm", []))
    spikes = []
    for i in range(SPIKE_WINDOW, len(points)):
        window = sorted(v for _, v in points[i - SPIKE_WINDOW:i])
        median = window[len(window) // 2]
        if points[i][1] > SPIKE_FACTOR * max(median, 1e-8):
            spikes.append(points[i])
    if not spikes:
        return []
    step, value = spikes[0]
    return [Note("warning", "grad_norm", "Gradient-norm spikes",
                 f"`grad_norm` jumped to {value:.3g} at step {int(step)}, more than "
                 f"{SPIKE_FACTOR:g}x the recent median ({len(spikes)} spike(s) in all). A spike "
                 "is one batch pulling the weights hard: an unusual pair (very long, empty, "
                 "garbled) or a learning rate at the edge of stability.",
                 "Look at the pairs of that step's batch (data checks: lengths, empty replies); "
                 "lower learning_rate, keep max_grad_norm at 1.0 (clipping), add warm-up "
                 "(warmup_ratio 0.1).", int(step))]


def _warmup_unfinished(h: dict, config: dict) -> list[Note]:
    points = finite(h.get("learning_rate", []))
    if len(points) < MIN_POINTS:
        return []
    values = [v for _, v in points]
    peak, target = max(values), config.get("learning_rate")
    first = int(points[0][0])
    if peak <= 0:
        return [Note("warning", "learning_rate", "The learning rate is 0",
                     "`learning_rate` is 0 at every logged step: the weights never change.",
                     "Set learning_rate above 0 (5e-7 to 5e-6 for full fine-tuning, 5e-6 to "
                     "5e-5 with LoRA).", first)]
    rising = all(b >= a for a, b in zip(values, values[1:], strict=False)) and values[-1] > values[0]
    short = isinstance(target, (int, float)) and target > 0 and peak < WARMUP_REACHED * target
    if not (short or rising):
        return []
    goal = f" (the configured learning_rate is {target:g})" if short else ""
    return [Note("warning", "learning_rate", "The learning rate never warmed up",
                 f"`learning_rate` rose to at most {peak:.3g}{goal} and was still climbing when "
                 "the run ended: the warm-up is longer than the run, so most steps used a "
                 "fraction of the intended rate.",
                 "Shorten warmup_steps / warmup_ratio (a tenth of the steps is usual) or train "
                 "for more steps.", first)]


CHECKS = (_non_finite, _both_rewards_falling, _accuracy_pinned, _margins_exploding,
          _loss_near_zero, _overfitting, _eval_accuracy_low, _eval_margins_negative,
          _likelihood_displacement, _grad_norm_spikes, _warmup_unfinished)


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
    "stalled": "The run never got past its set-up (it hung: processes waiting for each other, a "
               "download without network, a lock) and its watchdog stopped it. The log tail "
               "shows where; fix that and resume (first_progress_timeout_min sets the limit).",
    "lost": "The worker process disappeared without a final status (killed, or the machine "
            "restarted). Resume the run: it continues from its last complete checkpoint.",
    "unknown": "Read the log tail below for the first error line; resume the run after fixing "
               "it (it continues from the last complete checkpoint).",
}


def failure_advice(error_kind: str) -> str:
    """What to try after a failed run, by the worker's error kind."""
    return FAILURE_ADVICE.get(error_kind or "unknown", FAILURE_ADVICE["unknown"])


NOTES_POINTS = 400  # live notes read a thinned copy (trends, early logs) plus every bad value


def live_notes(live: LiveHistory, config: dict | None = None) -> list[Note]:
    """`curve_notes` of a live history, on a thinned copy plus each key's first bad value and
    every grad norm (a spike is one point); computed once per version of the history."""
    if live.notes_cache[0] != live.version:
        h = live.history(NOTES_POINTS)
        if "grad_norm" in live.steps:
            h["grad_norm"] = list(zip(live.steps["grad_norm"], live.values["grad_norm"],
                                      strict=True))
        for key, step in live.bad.items():
            h[key] = sorted([*h[key], (step, None)], key=lambda p: p[0])
        live.notes_cache = (live.version, curve_notes(h, config))
    return live.notes_cache[1]
