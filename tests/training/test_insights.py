"""Curve notes fire on the patterns they name and stay quiet on a healthy run; smoothing and the
leaderboard behave as TensorBoard and a W&B sweep table do."""

import math

import pandas as pd
import pytest

from dpo_core.training.history import smooth
from dpo_core.training.insights import Note, curve_notes, failure_advice, live_notes
from dpo_core.training.leaderboard import rank_runs
from dpo_core.training.metrics import last_values_of
from tests.support import shared_data

STEPS = list(range(10, 210, 10))  # 20 logs


def healthy() -> dict:
    """A sigmoid-loss run that learns: loss 0.69 -> 0.4, chosen up a little, rejected down."""
    n = len(STEPS)
    t = [i / (n - 1) for i in range(n)]
    return {
        "loss": [(s, 0.693 - 0.3 * x) for s, x in zip(STEPS, t, strict=True)],
        "rewards/chosen": [(s, 0.2 * x) for s, x in zip(STEPS, t, strict=True)],
        "rewards/rejected": [(s, -0.8 * x) for s, x in zip(STEPS, t, strict=True)],
        "rewards/margins": [(s, 1.0 * x) for s, x in zip(STEPS, t, strict=True)],
        "rewards/accuracies": [(s, 0.5 + 0.3 * x) for s, x in zip(STEPS, t, strict=True)],
        "eval_loss": [(s, 0.69 - 0.2 * x) for s, x in zip(STEPS, t, strict=True)],
    }


def titles(history) -> list[str]:
    return [n.title for n in curve_notes(history)]


def test_healthy_run_has_no_notes():
    assert curve_notes(healthy()) == []


def test_both_rewards_falling():
    h = healthy()
    h["rewards/chosen"] = [(s, -0.05 * i) for i, s in enumerate(STEPS)]
    notes = curve_notes(h)
    assert [n.title for n in notes] == ["Both rewards are falling"]
    assert "moving away from both answers" in notes[0].text
    assert "beta" in notes[0].fix and notes[0].severity == "warning"


@pytest.mark.parametrize("value, title", [(1.0, "Accuracy pinned at 1.0 from the start"),
                                          (0.0, "Accuracy pinned at 0.0 from the start")])
def test_accuracy_pinned_early(value, title):
    h = healthy()
    h["rewards/accuracies"] = [(s, value) for s in STEPS]
    assert title in titles(h)


def test_accuracy_reaching_one_late_is_fine():
    h = healthy()
    h["rewards/accuracies"] = [(s, 0.5 if i < 10 else 1.0) for i, s in enumerate(STEPS)]
    assert titles(h) == []


def test_margins_exploding():
    h = healthy()
    h["rewards/margins"] = [(s, 0.1 * 1.4 ** i) for i, s in enumerate(STEPS)]
    assert "Margins are exploding" in titles(h)


def test_loss_near_zero_train_and_eval():
    h = healthy()
    h["loss"] = [(s, 0.5 if i < 5 else 0.001) for i, s in enumerate(STEPS)]
    h["eval_loss"] = [(s, 0.004) for s in STEPS]
    notes = curve_notes(h)
    assert [(n.title, n.step) for n in notes] == [("The eval loss is close to 0", 10),
                                                  ("The train loss is close to 0", 60)]
    assert notes[1].headline() == "The train loss is close to 0 (from step 60)"


def test_nan_and_inf_come_first_as_errors():
    h = healthy()
    h["grad_norm"] = [(10, 1.0), (20, float("nan")), (30, None)]
    h["loss"] = h["loss"][:3] + [(40, float("inf"))] + h["loss"][4:]
    notes = curve_notes(h)
    assert notes[0].severity == "error" and notes[0].title == "NaN or infinite values"
    assert "`loss` (first at step 40)" in notes[0].text
    assert "`grad_norm` (first at step 20)" in notes[0].text


def ramp(a: float, b: float, steps=STEPS) -> list[tuple[int, float]]:
    """A straight line from a to b over the steps."""
    n = len(steps) - 1
    return [(s, a + (b - a) * i / n) for i, s in enumerate(steps)]


EVAL_STEPS = [50, 100, 150, 200]


def only(history, config=None) -> Note:
    notes = curve_notes(history, config)
    assert len(notes) == 1, [n.title for n in notes]
    return notes[0]


def test_the_issue_s_run_is_no_longer_silent():
    """Train loss near 0 while eval loss rose 0.85 -> 4.9, eval margins went negative and eval
    accuracy fell below 0.5: each of these has its own note, with the step it started."""
    h = healthy()
    h["loss"] = [(s, 0.69 if i < 5 else 0.005) for i, s in enumerate(STEPS)]
    h["eval_loss"] = list(zip(EVAL_STEPS, [0.85, 1.6, 3.2, 4.9], strict=True))
    h["eval_rewards/margins"] = list(zip(EVAL_STEPS, [0.4, 0.1, -0.8, -2.5], strict=True))
    h["eval_rewards/accuracies"] = list(zip(EVAL_STEPS, [0.62, 0.55, 0.44, 0.38], strict=True))
    notes = {n.title: n for n in curve_notes(h)}
    assert notes["Overfitting: eval loss rises while train loss falls"].step == 50
    assert notes["Eval margins are negative"].step == 150
    assert notes["Eval accuracy below 0.5"].step == 150
    assert "The train loss is close to 0" in notes


def test_overfitting_needs_the_train_loss_to_fall():
    h = healthy()
    h["eval_loss"] = list(zip(EVAL_STEPS, [0.6, 0.5, 0.7, 0.9], strict=True))
    note = only(h)
    assert note.title.startswith("Overfitting") and note.step == 100
    assert "lowest (0.5) at step 100" in note.text and "early_stopping_patience" in note.fix
    h["loss"] = ramp(0.4, 0.69)  # both rising: not overfitting (diverging, another story)
    assert not any(t.startswith("Overfitting") for t in titles(h))


def test_eval_accuracy_stuck_at_a_coin_flip():
    h = healthy()
    h["eval_rewards/accuracies"] = [(s, 0.5) for s in EVAL_STEPS]
    note = only(h)
    assert note.title == "Eval accuracy stuck at 0.5" and note.step == 50
    assert "learning rate" in note.fix and "identical pairs" in note.fix


def test_eval_accuracy_that_recovers_is_not_below_a_coin():
    h = healthy()
    h["eval_rewards/accuracies"] = list(zip(EVAL_STEPS, [0.4, 0.45, 0.6, 0.7], strict=True))
    assert titles(h) == []


def test_likelihood_displacement_on_the_eval_set():
    h = healthy()
    h["eval_logps/chosen"] = list(zip(EVAL_STEPS, [-80.0, -80.5, -85.0, -92.0], strict=True))
    note = only(h)
    assert note.title == "Chosen replies are becoming less likely" and note.step == 150
    assert "likelihood displacement" in note.text and "rpo_alpha" in note.fix


def test_likelihood_displacement_on_the_train_trend_and_rising_logps_are_fine():
    h = healthy()
    h["logps/chosen"] = ramp(-80.0, -110.0)
    assert only(h).key == "logps/chosen"
    h["logps/chosen"] = ramp(-95.0, -80.0)
    assert titles(h) == []


def test_margins_exploding_say_what_beta_makes_of_them():
    h = healthy()
    h["rewards/margins"] = ramp(0.5, 14.0)
    note = only(h, {"beta": 0.1})
    assert note.title == "Margins are exploding" and note.step is not None
    assert "With beta 0.1" in note.text and "nats" in note.text
    assert "beta" not in only(h).text.split("grew")[1].split("Margins this")[0]


def test_grad_norm_spike_names_its_step():
    h = healthy()
    h["grad_norm"] = [(s, 50.0 if s == 130 else 1.0 + 0.01 * i) for i, s in enumerate(STEPS)]
    note = only(h)
    assert note.title == "Gradient-norm spikes" and note.step == 130
    h["grad_norm"] = ramp(3.0, 0.5)  # a norm that settles is healthy
    assert titles(h) == []


def test_grad_norm_spike_is_seen_in_a_long_live_history():
    from dpo_core.training.history import LiveHistory

    live = LiveHistory()
    live.add(rows("grad_norm", [(s, 40.0 if s == 2711 else 1.0) for s in range(5000)]))
    assert [(n.title, n.step) for n in live_notes(live)] == [("Gradient-norm spikes", 2711)]


def test_a_learning_rate_that_never_warmed_up():
    h = healthy()
    h["learning_rate"] = ramp(1e-7, 2e-6)
    note = only(h, {"learning_rate": 5e-6})
    assert note.title == "The learning rate never warmed up" and note.step == 10
    assert "5e-06" in note.text and "warmup" in note.fix
    h["learning_rate"] = ramp(5e-6, 0.0)  # a normal linear decay after warm-up
    assert titles(h) == []
    h["learning_rate"] = [(s, 0.0) for s in STEPS]
    assert only(h).title == "The learning rate is 0"


def test_history_as_long_and_wide_frames():
    h = healthy()
    h["rewards/accuracies"] = [(s, 1.0) for s in STEPS]
    long = pd.DataFrame([{"step": s, "key": k, "value": v} for k, pts in h.items() for s, v in pts])
    wide = pd.DataFrame({"step": STEPS, **{k: [v for _, v in pts] for k, pts in h.items()}})
    assert titles(long) == titles(wide) == ["Accuracy pinned at 1.0 from the start"]


def test_real_childes_run_is_not_flagged_early():
    frame = pd.read_csv(shared_data("childes-dpo", "training_metrics_real.csv"))
    # accuracy reaches 1.0 only after thousands of steps and the loss stays above ~0.04
    assert titles(frame) == []


def test_smooth_matches_tensorboard_debiased_ema():
    assert smooth([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    out = smooth([1.0, 2.0, 3.0], 0.5)
    assert out[0] == 1.0  # debiased: the first point is not pulled towards 0
    assert out[1] == pytest.approx((0.25 + 1.0) / 0.75)
    assert smooth([5.0] * 4, 0.9) == pytest.approx([5.0] * 4)
    gap = smooth([1.0, float("nan"), 1.0], 0.6)
    assert math.isnan(gap[1]) and gap[2] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        smooth([1.0], 1.0)


def test_leaderboard_orders_by_eval_accuracy_then_eval_loss():
    runs = [
        {"id": "a", "name": "a", "params": {"beta": 0.1}, "runtime": 10,
         "metrics": {"eval_rewards/accuracies": 0.8, "eval_loss": 0.5}},
        {"id": "b", "name": "b", "params": {"beta": 0.2}, "runtime": 20,
         "metrics": {"eval_rewards/accuracies": 0.9, "eval_loss": 0.6}},
        {"id": "c", "name": "c", "params": {"beta": 0.3}, "runtime": 30,
         "metrics": {"eval_rewards/accuracies": 0.8, "eval_loss": 0.4}},
        {"id": "d", "name": "d", "params": {}, "runtime": None, "metrics": {"loss": 0.1}},
    ]
    rows = rank_runs(runs)
    assert [r["name"] for r in rows] == ["b", "c", "a", "d"]
    assert rows[0] == {"name": "b", "id": "b", "beta": 0.2, "eval_loss": 0.6,
                       "eval_rewards/accuracies": 0.9, "runtime": 20.0}


def test_last_values_of_runs_reads_the_last_value_per_run(store):
    from dpo_core.training.metrics import write_metrics

    with store.write() as conn:  # metrics always belong to a run
        for run_id in ("r1", "r2"):
            conn.execute("INSERT INTO runs(id, kind, created) VALUES(?, 'train', 0)", (run_id,))
    write_metrics(store, "r1", 1, {"loss": 0.7, "eval_loss": 0.69})
    write_metrics(store, "r1", 2, {"loss": 0.5})
    write_metrics(store, "r2", 1, {"loss": 0.6, "epoch": 1.0})
    assert last_values_of(store, ["r1", "r2"]) == {"r1": {"loss": 0.5, "eval_loss": 0.69}, "r2": {"loss": 0.6}}


def test_failure_advice_per_error_kind():
    assert "lora" in failure_advice("oom")
    assert failure_advice("") == failure_advice("something-new") == failure_advice("unknown")


def rows(key, points, start_id=1):
    return [{"id": start_id + i, "key": key, "step": s, "value": v}
            for i, (s, v) in enumerate(points)]


def test_live_history_extends_smoothing_incrementally_and_matches_smooth():
    from dpo_core.training.history import LiveHistory

    values = [0.7 - 0.001 * i + (0.05 if i % 3 else 0) for i in range(1000)]
    live = LiveHistory()
    live.add(rows("loss", list(enumerate(values[:600]))))
    assert live.smoothed("loss", 0.6) == pytest.approx(smooth(values[:600], 0.6))
    live.add(rows("loss", list(enumerate(values))[600:], start_id=601))
    assert live.last_id == 1000
    assert live.smoothed("loss", 0.6) == pytest.approx(smooth(values, 0.6))
    live.add([{"id": 1001, "key": "loss", "step": 10, "value": 9.0}])  # a rewritten step
    assert live.smoothed("loss", 0.6) == pytest.approx(
        smooth(values[:10] + [9.0] + values[11:], 0.6))


def test_live_history_thins_for_drawing_but_notes_see_every_bad_value():
    from dpo_core.training.history import LiveHistory

    live = LiveHistory()
    live.add(rows("grad_norm", [(s, float("nan") if s == 1237 else 1.0) for s in range(5000)]))
    xs, ys = live.thinned("grad_norm", 0.0, 250)
    assert len(xs) <= 251 and xs[-1] == 4999 and 1237 not in xs
    assert [n.title for n in live_notes(live)] == ["NaN or infinite values"]
    assert "(first at step 1237)" in live_notes(live)[0].text
    assert len(live.history()["grad_norm"]) == 5000
