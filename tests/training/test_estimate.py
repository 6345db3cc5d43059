"""The resource estimate: parameter counts from config.json, LoRA has no reference copy, warnings."""

from __future__ import annotations

import dataclasses

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

    from dpo_core.training.config import lora_config

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
    cfg = RunConfig(method="full", per_device_train_batch_size=64, max_length=4096)
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
