"""Every recipe loads, validates and maps onto the installed TRL/PEFT, so recipes never drift."""

from __future__ import annotations

import pytest

from dpo_core.device import DeviceInfo
from dpo_core.recipes import recipe_paths
from dpo_core.training.config import RunConfig, validate
from dpo_core.training.trl_args import to_trl

# training recipes; pair builds (recipes/generate) and sweeps (recipes/sweeps) are tested with
# their builders and sweeps
RECIPES = recipe_paths("train")
CPU = DeviceInfo("cpu", "test", 8.0, 1, "fp32")
GPU = DeviceInfo("cuda", "test GPU", 80.0, 1, "bf16")


def test_the_promised_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"cpu-quick-demo", "childes-baby", "gpt2-orca-sweep-winner", "qlora",
            "smoke-tiny"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_maps_onto_installed_trl(path, tmp_path):
    import dataclasses

    import torch

    cfg = RunConfig.load(path)
    device = GPU if cfg.method == "qlora" else CPU
    validate(cfg, device)
    if device.kind == "cuda" and not torch.cuda.is_available():
        # TrainingArguments refuses bf16 without the hardware: map the rest of it on CPU
        cfg, device = dataclasses.replace(cfg, method="lora"), CPU
    args, lora = to_trl(cfg, tmp_path, device)
    assert args.loss_type == [cfg.loss_type] and args.beta == cfg.beta
    assert args.learning_rate == cfg.learning_rate
    assert args.per_device_train_batch_size == cfg.per_device_train_batch_size
    assert args.gradient_accumulation_steps == cfg.gradient_accumulation_steps
    assert args.max_length == cfg.max_length
    assert args.bf16 is (device.kind == "cuda")
    assert (lora is None) == (cfg.method == "full")
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg


def test_seed_recipes_carry_the_published_settings():
    load = {p.stem: RunConfig.load(p) for p in RECIPES}
    baby = load["childes-baby"]
    assert (baby.learning_rate, baby.per_device_train_batch_size,
            baby.gradient_accumulation_steps, baby.num_train_epochs, baby.logging_steps,
            baby.save_steps) == (5e-6, 4, 4, 10, 10, 2000)
    orca = load["gpt2-orca-sweep-winner"]
    assert (orca.beta, orca.learning_rate, orca.per_device_train_batch_size,
            orca.gradient_accumulation_steps, orca.max_steps, orca.warmup_steps,
            orca.max_length, orca.max_prompt_length) == (0.2, 5.4e-5, 8, 4, 500, 50, 512, 256)
    q = load["qlora"]
    assert (q.method, q.lora.r, q.lora.alpha, q.lora.dropout, q.learning_rate,
            q.lr_scheduler_type, q.warmup_ratio) == ("qlora", 16, 32, 0.05, 5e-6, "cosine", 0.1)
    assert set(q.lora.target_modules) >= {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                          "up_proj", "down_proj"}
    assert load["cpu-quick-demo"].model == "builtin:smollm2-135m-instruct"
    assert load["smoke-tiny"].model == "builtin:tiny"


def test_qlora_recipe_is_refused_without_cuda():
    from dpo_core.errors import ConfigError

    cfg = RunConfig.load(next(p for p in RECIPES if p.stem == "qlora"))
    with pytest.raises(ConfigError, match="method.*CUDA"):
        validate(cfg, CPU)
