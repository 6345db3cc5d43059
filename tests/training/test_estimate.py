"""The resource estimate: parameter counts from config.json, LoRA has no reference copy, warnings."""

from __future__ import annotations

import dataclasses

import pytest

from dpo_core.device import DeviceInfo
from dpo_core.training.config import RunConfig
from dpo_core.training.estimate import SMOLLM2_CONFIG, count_params, estimate

CPU = DeviceInfo("cpu", "2 threads", 8.0, 1, "fp32")
H100 = DeviceInfo("cuda", "NVIDIA H100", 80.0, 1, "bf16")


def test_param_count_matches_the_real_tiny_model(workspace_with_tiny):
    from dpo_core.models import resolve_model

    model = resolve_model("builtin:tiny").model
    real = sum(p.numel() for p in model.parameters())
    est = estimate(RunConfig(model="builtin:tiny", method="full"), device=CPU)
    assert est.total_params == real
    assert est.trained_params == real
    lora = estimate(RunConfig(model="builtin:tiny"), device=CPU)
    from peft import get_peft_model

    from dpo_core.training.trl_args import lora_config

    peft_model = get_peft_model(model, lora_config(RunConfig(model="builtin:tiny")))
    assert lora.trained_params == sum(p.numel() for p in peft_model.parameters()
                                      if p.requires_grad)


def test_default_model_is_135m_and_lora_needs_no_reference():
    total, _ = count_params(SMOLLM2_CONFIG)
    assert 134e6 < total < 136e6
    lora = estimate(RunConfig(), device=CPU)
    full = estimate(dataclasses.replace(RunConfig(), method="full"), device=CPU)
    assert lora.memory_gb["reference"] == 0 and full.memory_gb["reference"] > 0
    assert lora.memory_gb["optimizer"] < full.memory_gb["optimizer"] / 10
    pre = estimate(dataclasses.replace(RunConfig(), method="full", precompute_ref_log_probs=True),
                   device=CPU)
    assert pre.memory_gb["reference"] == 0
    assert lora.seconds_per_step > 0 and lora.fits


def test_too_big_warns_with_a_fix():
    cfg = RunConfig(method="full", per_device_train_batch_size=64, max_length=4096,
                    gradient_checkpointing=False)  # 'auto' would turn it on (test_planner)
    est = estimate(cfg, device=H100)
    assert not est.fits
    assert "method: lora" in est.warnings[0] and "gradient_checkpointing" in est.warnings[0]
    assert "warning:" in est.describe()


def test_time_counts_the_datasets_real_lengths_and_the_cli_validates_first(
        workspace_with_tiny, store, capsys, monkeypatch):
    """Short pairs under a long max_length: the estimate follows the padded batches, not the
    limit; `train --estimate` refuses what a launch would refuse."""
    from dpo_core.cli.main import main
    from dpo_core.data.importer import import_pairs
    from dpo_core.training import estimate as est_mod

    import_pairs(store, [{"prompt": f"*MOT: look {i} .", "chosen": " *CHI: ball .",
                          "rejected": " *CHI: no ."} for i in range(12)], dataset="short")
    monkeypatch.setattr(est_mod, "_flops_per_second", lambda *a: 1e6)  # seconds worth comparing
    cfg = RunConfig(model="builtin:tiny", dataset="short", max_length=1024,
                    max_prompt_length=512, per_device_train_batch_size=4)
    measured = estimate(cfg, workspace_with_tiny, device=CPU, store=store)
    worst = estimate(dataclasses.replace(cfg, dataset="missing"), workspace_with_tiny,
                     device=CPU, store=store)
    length = est_mod._padded_length(cfg, workspace_with_tiny, store)
    assert 5 < length < 40  # a dozen short CHILDES-like pairs, rendered with the tokenizer
    assert abs(measured.seconds_per_step / worst.seconds_per_step - length / 1024) < 1e-3

    config = workspace_with_tiny.home / "c.yaml"
    config.write_text("model: builtin:tiny\ndataset: short\nmax_length: 1024\n")
    assert main(["train", str(config), "--estimate"]) == 0
    assert "time per optimizer step" in capsys.readouterr().out
    assert main(["train", str(config), "--estimate", "--set", "beta=-1"]) == 2
    assert "beta is -1" in capsys.readouterr().err
    assert main(["train", str(config), "--estimate", "--set", "dataset=nope"]) == 2
    assert "No dataset 'nope'" in capsys.readouterr().err


def test_memory_follows_the_dtypes_the_worker_loads():
    """LoRA keeps fp32 master weights even in a bf16 run; a bf16 full fine-tune holds bf16
    weights and a second bf16 copy as its reference."""
    per_param = 1 / 2**30
    total, _ = count_params(SMOLLM2_CONFIG)
    lora = estimate(RunConfig(precision="bf16"), device=H100)
    assert lora.memory_gb["weights"] == round(total * 4 * per_param, 3)
    full = estimate(RunConfig(method="full", precision="bf16"), device=H100)
    assert full.memory_gb["weights"] == full.memory_gb["reference"] == round(
        total * 2 * per_param, 3)
    assert full.memory_gb["optimizer"] == round(total * 4 * per_param, 3)  # two bf16 moments
    fp32 = estimate(RunConfig(method="full"), device=CPU)
    assert fp32.memory_gb["reference"] == fp32.memory_gb["weights"] == round(
        total * 4 * per_param, 3)


def test_the_whole_run_adds_up_start_steps_evaluations_samples_and_checkpoints():
    from dpo_core.training.estimate import whole_run

    measured = {"step_s": 2.0, "step_low_s": 1.5, "step_high_s": 3.0, "load_s": 10.0,
                "eval_batch_s": 0.5, "token_s": 0.1, "checkpoint_s": 1.0, "ref_pair_s": 0.2}
    cfg = RunConfig(max_steps=20, eval_steps=10, save_steps=10, sample_every=10,
                    sample_prompts=2, sample_max_new_tokens=8, per_device_eval_batch_size=4)
    run = whole_run(cfg, 2.0, measured, (100, 10), 135)
    assert run["parts"] == {"startup": 10.0, "steps": 40.0, "evaluations": 2 * 3 * 0.5,
                            "samples": 3 * 2 * 8 * 0.1,  # baseline, step 10, step 20
                            "checkpoints": 3 * 1.0}
    assert run["total"] == pytest.approx(10 + 40 + 3 + 4.8 + 3)
    pre = whole_run(dataclasses.replace(cfg, precompute_ref_log_probs=True), 2.0, measured,
                    (100, 10), 135)
    assert pre["parts"]["startup"] == pytest.approx(10 + 100 * 0.2)  # each pair's reference once
    assert run["low"] < run["total"] < run["high"]
    assert run["high"] >= (run["total"] + 20 * 1.0)  # the slowest repeat, every step


@pytest.mark.slow
def test_a_measured_estimate_times_the_real_step_and_the_run_keeps_it(
        workspace_with_tiny, store, capsys):
    from dpo_core.cli.main import main
    from dpo_core.training.runs import get_run, start_run, time_left
    from tests.support import toy_dataset

    toy_dataset(store, 12, 4)
    cfg = RunConfig(model="builtin:tiny", dataset="toy", max_length=64, max_prompt_length=32,
                    per_device_train_batch_size=2, max_steps=6)
    est = estimate(cfg, workspace_with_tiny, store=store, measure=True, repeats=3)
    m = est.measured
    assert 3 <= m["repeats"] <= 12 and 0 < m["step_low_s"] <= m["step_s"] <= m["step_high_s"]
    assert m["load_s"] > 0 and m["token_s"] > 0 and m["checkpoint_s"] > 0
    assert est.seconds_per_step == pytest.approx(m["step_s"], abs=1e-3)
    assert f"measured here, median of {m['repeats']}" in est.describe() and "whole run: ~" in est.describe()

    config = workspace_with_tiny.home / "c.yaml"
    config.write_text("model: builtin:tiny\ndataset: toy\nmax_length: 64\nmax_prompt_length: 32\n")
    assert main(["train", str(config), "--estimate"]) == 0
    out = capsys.readouterr()
    assert "measured here" in out.out and "timing 4 or more steps" in out.err
    assert out.out.startswith("parameters:")  # the timed trainer's own log lines go to stderr

    run = get_run(store, start_run(store, cfg, launch=False))
    guess = run["result"]["estimate"]
    assert guess["step_s"] > 0 and guess["low"] <= guess["total"] <= guess["high"]
    assert time_left(run) == (guess["total"], "estimated")
    run.update(step=2, step_seconds=1.5)  # once steps move, their measured time replaces it
    assert time_left(run) == (6.0, "measured")
