"""RunConfig: YAML round trip, overrides, help text, validation messages, the TRL mapping."""

from __future__ import annotations

import dataclasses

import pytest

from dpo_core.data.datasets import Pair, create_dataset, insert_pairs
from dpo_core.device import DeviceInfo
from dpo_core.errors import ConfigError
from dpo_core.fields import field_help
from dpo_core.training.config import (
    LoraSettings,
    RunConfig,
    accepted_loss_types,
    apply_overrides,
    validate,
)
from dpo_core.training.trl_args import to_trl

CPU = DeviceInfo("cpu", "test", 8.0, 1, "fp32")


def cfg(**kw) -> RunConfig:
    return RunConfig(dataset="toy", **kw)


def test_yaml_round_trip_and_every_field_has_help(tmp_path):
    c = cfg(beta=0.3, lora=LoraSettings(r=8, target_modules=["q_proj", "v_proj"]),
            report_to=["tensorboard"], prompt_format={"kind": "plain", "template": "{prompt}"})
    c.save(tmp_path / "c.yaml")
    assert RunConfig.load(tmp_path / "c.yaml") == c
    helps = field_help(RunConfig)
    assert {"beta", "loss_type", "lora.r", "lora.target_modules", "precision"} <= set(helps)
    assert all(text.strip() for text in helps.values())
    for f in dataclasses.fields(RunConfig):
        assert f.metadata.get("help"), f.name


def test_overrides_parse_types_and_dotted_keys():
    c = apply_overrides(cfg(), ["beta=0.25", "lora.r=8", "lora.target_modules=q_proj,v_proj",
                                "gradient_checkpointing=true", "max_steps=10",
                                "report_to=wandb,trackio", "eval_split="])
    assert (c.beta, c.lora.r, c.gradient_checkpointing, c.max_steps) == (0.25, 8, True, 10)
    assert c.report_to == ["wandb", "trackio"] and c.eval_split == ""
    assert c.lora.target_modules == "q_proj,v_proj"
    _, lora = to_trl(c, "/tmp/x", CPU)
    assert set(lora.target_modules) == {"q_proj", "v_proj"}


@pytest.mark.parametrize("override, message", [
    ("beta=abc", "beta is 'abc', which is not a number"),
    ("lora.r=1.5", "lora.r is 1.5, which is not a whole number"),
    ("lr=1e-5", "Unknown config field 'lr'"),
    ("lora.rank=4", "Unknown config field 'lora.rank'"),
    ("beta", "has no '='"),
])
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        apply_overrides(cfg(), [override])


@pytest.mark.parametrize("changes, field, fix", [
    ({"learning_rate": -1.0}, "learning_rate is -1.0", "positive"),
    ({"beta": 0.0}, "beta is 0.0", "positive"),
    ({"per_device_train_batch_size": 0}, "per_device_train_batch_size is 0", ">= 1"),
    ({"max_steps": 0}, "max_steps is 0", "-1"),
    ({"warmup_ratio": 1.5}, "warmup_ratio is 1.5", "[0, 1)"),
    ({"max_prompt_length": 600, "max_length": 512}, "max_prompt_length is 600", "below max_length"),
    ({"eval_steps": 10, "eval_split": ""}, "eval_split is ''", "eval_steps"),
    ({"loss_type": "nope"}, "loss_type is 'nope'", "sigmoid"),
    ({"method": "qlora"}, "method is 'qlora'", "CUDA"),
    ({"method": "adapter"}, "method is 'adapter'", "full, lora, qlora"),
    ({"lora": LoraSettings(dropout=1.0)}, "lora.dropout is 1.0", "[0, 1)"),
    ({"report_to": ["mlflow"]}, "report_to is", "wandb"),
])
def test_validation_names_field_value_and_fix(changes, field, fix):
    with pytest.raises(ConfigError) as err:
        validate(dataclasses.replace(cfg(), **changes), CPU)
    assert field in err.value.message
    assert fix in err.value.fix


def test_loss_types_come_from_installed_trl():
    types = accepted_loss_types()
    assert {"sigmoid", "ipo", "hinge", "robust"} <= set(types)
    for loss in types:
        extra = {"label_smoothing": 0.001} if loss == "exo_pair" else {}
        args, _ = to_trl(validate(cfg(loss_type=loss, **extra), CPU), "/tmp/x", CPU)
        assert args.loss_type == [loss]


def test_to_trl_sets_precision_and_intervals_explicitly(tmp_path):
    c = cfg(eval_steps=5, save_steps=7, logging_steps=3, warmup_ratio=0.1, method="full",
            precompute_ref_log_probs=True)
    args, lora = to_trl(c, tmp_path, CPU)
    assert lora is None
    assert args.bf16 is False and args.fp16 is False  # TRL would default bf16=True
    assert (args.eval_strategy, args.eval_steps, args.save_steps, args.logging_steps) == \
        ("steps", 5, 7, 3)
    assert args.warmup_steps == 0.1 and args.precompute_ref_log_probs
    assert args.use_liger_kernel is False
    assert args.output_dir == str(tmp_path / "checkpoints")
    assert args.report_to == [] or args.report_to in ("none", ["none"])


def test_store_checks_dataset_pairs_and_model(store, workspace):
    with pytest.raises(ConfigError, match="dataset is 'toy'"):
        validate(cfg(model="builtin:tiny"), CPU, store, workspace)
    ds = create_dataset(store, "toy")
    insert_pairs(store, ds.id, [Pair("p", "a", "b", split="eval")])
    with pytest.raises(ConfigError, match="0 pairs in train_split 'train'") as err:
        validate(cfg(model="builtin:tiny"), CPU, store, workspace)
    assert "eval" in err.value.fix
    insert_pairs(store, ds.id, [Pair("p", "a", "b", split="train")])
    validate(cfg(model="builtin:tiny"), CPU, store, workspace)
    with pytest.raises(ConfigError, match="model is"):
        validate(cfg(model=str(workspace.home / "no-such-model")), CPU, store, workspace)


def test_max_length_shorter_than_prompts_is_refused(store, workspace_with_tiny):
    from dpo_core.training.runs import start_run

    ds = create_dataset(store, "toy")
    insert_pairs(store, ds.id, [Pair("what is that ? " * 20, "a ball", "no")])
    with pytest.raises(ConfigError, match="max_length is 16") as err:
        start_run(store, cfg(model="builtin:tiny", max_length=16, max_prompt_length=0,
                             eval_split=""), launch=False)
    assert "max_prompt_length" in err.value.fix
    assert not any((workspace_with_tiny.runs).iterdir()), "no half-made run folder is left"
    # with max_prompt_length the prompt is cut to its last tokens instead
    run_id = start_run(store, cfg(model="builtin:tiny", max_length=32, max_prompt_length=8,
                                  eval_split=""), launch=False)
    import json

    from dpo_core.models import load_tokenizer, resolve_path

    row = json.loads((workspace_with_tiny.runs / run_id / "pairs.train.jsonl").read_text())
    tok = load_tokenizer(resolve_path("builtin:tiny"))
    assert len(tok(row["prompt"], add_special_tokens=False)["input_ids"]) <= 9
    assert row["prompt"].endswith("assistant\n")


def test_a_cluster_run_is_not_refused_for_this_machines_device():
    """QLoRA and fp16 need a GPU: refused for a run on this CPU machine, not for a run sent to a
    cluster target, whose nodes have the GPUs."""
    gpu_run = cfg(method="qlora", precision="fp16", target="gpu-cluster")
    assert validate(gpu_run, CPU) is gpu_run
    with pytest.raises(ConfigError, match="QLoRA"):
        validate(dataclasses.replace(gpu_run, target="local"), CPU)
