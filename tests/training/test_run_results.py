"""What a finished run shows: the same bookkeeping whether or not it was stopped and resumed,
samples read against the model before training, and the best checkpoint kept when asked."""

from __future__ import annotations

import pytest

from dpo_core.errors import ConfigError
from dpo_core.training import metrics, runs
from dpo_core.training.callbacks import _before
from dpo_core.training.config import validate
from tests.support import tiny_config, toy_dataset, wait_until


@pytest.fixture
def toy(store, workspace_with_tiny):
    return toy_dataset(store, 16, 4)


def values(store, run_id: str, key: str) -> dict[int, float]:
    return {r["step"]: r["value"] for r in metrics.read_metrics(store, run_id) if r["key"] == key}


def finish(store, run_id: str) -> dict:
    run = runs.wait_run(store, run_id, poll=0.3)
    assert run["status"] == "completed", run["error_text"]
    return run


def test_what_a_stopped_part_counted_weighs_by_the_steps_it_covers():
    history = [{"step": 2, "loss": 0.6, "num_tokens": 100.0}, {"step": 3, "loss": 0.3},
               {"step": 4, "num_tokens": 210.0, "loss": 0.4}, {"step": 6, "loss": 9.0}]
    tokens, loss = _before(history, 4)
    assert tokens == 210.0
    assert loss == pytest.approx((0.6 * 2 + 0.3 * 1 + 0.4 * 1) / 4)


@pytest.mark.slow
def test_a_cancelled_and_resumed_run_keeps_the_whole_run_s_books(store, toy):
    steps = 6
    ref = finish(store, runs.start_run(store, tiny_config(max_steps=steps, sample_every=3)))

    cfg = tiny_config(max_steps=steps, sample_every=3)
    cfg.debug.step_delay = 0.5
    run_id = runs.start_run(store, cfg)
    wait_until(lambda: runs.get_run(store, run_id)["step"] >= 2, "step 2")
    stopped = runs.cancel_run(store, run_id)
    assert stopped["status"] == "cancelled" and 2 <= stopped["step"] < steps
    runs.resume_run(store, run_id)
    finish(store, run_id)

    # num_tokens goes on from where the stopped part was, as in the uninterrupted run
    tokens, ref_tokens = values(store, run_id, "num_tokens"), values(store, ref["id"], "num_tokens")
    assert sorted(tokens) == list(range(1, steps + 1))
    assert tokens == pytest.approx(ref_tokens)
    # one end-of-training summary, the whole run's, at the last step
    for key in ("train_runtime", "train_loss", "train_samples_per_second"):
        assert list(values(store, run_id, key)) == [steps], key
    assert values(store, run_id, "train_loss")[steps] == pytest.approx(
        values(store, ref["id"], "train_loss")[steps], abs=1e-3)
    # samples: the baseline once, then every 3 steps; the last step's once (3 divides 6)
    sampled = [s["step"] for s in metrics.read_samples(store, run_id)]
    assert sampled == [0, 3, 6] == [s["step"] for s in metrics.read_samples(store, ref["id"])]


@pytest.mark.slow
def test_samples_read_as_a_person_writes_them_next_to_the_baseline(store, workspace_with_tiny):
    from dpo_core.data.datasets import Pair, create_dataset, insert_pairs
    from dpo_core.formats import CHAT_FORMAT, Messages

    ds = create_dataset(store, "chatty", prompt_format=CHAT_FORMAT.to_dict())
    insert_pairs(store, ds.id, [Pair(
        prompt=Messages([{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": f"name a colour {i}"}]),
        chosen=Messages([{"role": "assistant", "content": "blue"}]),
        rejected=Messages([{"role": "assistant", "content": "no"}]),
        split="train" if i < 8 else "eval") for i in range(10)])
    run = finish(store, runs.start_run(store, tiny_config(dataset="chatty", max_steps=2)))
    samples = metrics.read_samples(store, run["id"])
    assert [s["step"] for s in samples] == [0, 2]
    assert samples[0]["prompt"] == samples[1]["prompt"] == "system: Be brief.\nuser: name a colour 8"
    assert "<|im_start|>" not in samples[0]["prompt"]


def test_the_best_checkpoint_needs_evaluations_that_line_up_with_checkpoints(store, toy):
    with pytest.raises(ConfigError) as err:
        validate(tiny_config(metric_for_best_model="eval_loss"), store)
    assert err.value.field == "eval_steps"
    with pytest.raises(ConfigError) as err:
        validate(tiny_config(metric_for_best_model="eval_loss", eval_steps=2, save_steps=3), store)
    assert err.value.field == "save_steps" and "multiple of eval_steps (2)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate(tiny_config(early_stopping_patience=2), store)
    assert "metric_for_best_model" in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate(tiny_config(metric_for_best_model="loss", eval_steps=2), store)
    assert "eval_rewards/accuracies" in err.value.fix


@pytest.mark.slow
def test_early_stopping_keeps_the_best_checkpoint_as_the_final_model(store, workspace_with_tiny):
    import torch
    from safetensors.torch import load_file

    from dpo_core.data.datasets import Pair, create_dataset, insert_pairs
    from tests.support import CHILD_ANSWERS

    # eval pairs are the train pairs with chosen and rejected swapped: whatever training
    # learns makes the eval loss worse, so the best checkpoint is the first one evaluated
    ds = create_dataset(store, "overfits")
    insert_pairs(store, ds.id, [Pair(f"{p} {i}", c, r) for i in range(16)
                                for p, c, r in [CHILD_ANSWERS[i % 4]]])
    insert_pairs(store, ds.id, [Pair(f"{p} {i}", r, c, split="eval") for i in range(4)
                                for p, c, r in [CHILD_ANSWERS[i % 4]]])
    cfg = tiny_config(dataset="overfits", max_steps=40, eval_steps=2, save_steps=2,
                      learning_rate=0.01, metric_for_best_model="eval_loss",
                      early_stopping_patience=2, sample_prompts=0)
    run = finish(store, runs.start_run(store, cfg))
    best = run["result"]["best"]
    evals = values(store, run["id"], "eval_loss")
    assert best == {"step": 2, "metric": "eval_loss", "value": pytest.approx(evals[2])}
    assert evals[2] == min(evals.values())
    assert run["result"]["stopped_early"] is True
    assert run["step"] == max(evals) == 6  # two evaluations without a gain, then it stops
    assert runs.best_note(run).startswith("Stopped early at step 6: eval_loss did not improve "
                                          "for 2 evaluations. The final model is the best one, "
                                          "checkpoint-2")
    final = load_file(f"{run['run_dir']}/final/adapter_model.safetensors")
    kept = load_file(f"{run['run_dir']}/checkpoints/checkpoint-2/adapter_model.safetensors")
    last = load_file(f"{run['run_dir']}/checkpoints/checkpoint-6/adapter_model.safetensors")
    assert all(torch.equal(final[k], kept[k]) for k in final)
    assert any(not torch.equal(final[k], last[k]) for k in final)
