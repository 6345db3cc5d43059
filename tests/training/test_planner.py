"""The execution planner: choices with reasons from the data, model and device; TRL's defaults
one setting away; the optimisation untouched; too-long pairs counted and never trained on
silently; the reference cache keyed by everything it depends on; seeded length-grouped batches."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dpo_core.data.datasets import Pair, create_dataset, insert_pairs
from dpo_core.device import DeviceInfo
from dpo_core.errors import ConfigError
from dpo_core.models import DEFAULT_SPEC
from dpo_core.training import planner, refcache, runs
from dpo_core.training.config import RunConfig, validate
from dpo_core.training.estimate import memory_gb
from dpo_core.training.planner import TRL_DEFAULTS, Lengths, plan, unplanned
from dpo_core.training.trl_args import to_trl
from dpo_core.training.worker import epoch_grouped_sampler
from tests.support import CHILD_ANSWERS, tiny_config

CPU = DeviceInfo("cpu", "test", 8.0, 1, "fp32")
OPTIMISATION = ("learning_rate", "beta", "per_device_train_batch_size",
                "gradient_accumulation_steps", "max_steps", "num_train_epochs", "seed",
                "loss_type", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "method")


def gpu(memory: float, precision: str = "bf16") -> DeviceInfo:
    """A fake CUDA device: no GPU is needed to check what the planner chooses for one."""
    return DeviceInfo("cuda", f"fake {memory:g} GB GPU", memory, 1, precision)


def lengths(*pairs: tuple[int, int, int]) -> Lengths:
    return Lengths(*(list(x) for x in zip(*pairs, strict=True)))


def spread(n: int = 64) -> Lengths:
    """Pairs from very short to long, so random batches pad a lot."""
    return lengths(*[(4 + (i * 37) % 60, 2 + (i * 11) % 40, 1 + (i * 7) % 20) for i in range(n)])


# ---------------------------------------------------------------------------------------
# Choices
# ---------------------------------------------------------------------------------------
def test_max_length_is_the_longest_pair_or_the_percentile():
    data = lengths((10, 5, 3), (20, 30, 4), (8, 2, 90))
    chosen = plan(RunConfig(), data, CPU).choices["max_length"]
    assert chosen.value == 104 and "98 tokens" in chosen.reason  # 8 + 90, rounded up to 8
    cut = plan(RunConfig(length_percentile=60), data, CPU)
    assert cut.choices["max_length"].value == 56 and cut.too_long == 1  # 20 + 30 = 50 -> 56
    assert "raise max_length to 104" in cut.too_long_line()


def test_a_value_set_in_the_config_is_kept():
    p = plan(RunConfig(max_length=512, gradient_checkpointing=True, batch_order="random"),
             spread(), CPU)
    for name, value in (("max_length", 512), ("gradient_checkpointing", True),
                        ("batch_order", "random")):
        assert (p.choices[name].value, p.choices[name].source) == (value, "config")


def test_batches_are_grouped_by_length_when_that_pads_less():
    p = plan(RunConfig(per_device_train_batch_size=8), spread(), CPU)
    assert p.choices["batch_order"].value == "by_length"
    assert p.padding["by_length"] < p.padding["random"] - 0.05
    same = lengths(*[(10, 5, 5)] * 64)
    assert plan(RunConfig(), same, CPU).choices["batch_order"].value == "random"


def test_the_reference_is_precomputed_when_the_run_passes_over_its_pairs():
    data = spread(64)
    two_epochs = plan(RunConfig(num_train_epochs=2), data, CPU).choices
    assert two_epochs["precompute_ref_log_probs"].value is True
    one_epoch = plan(RunConfig(num_train_epochs=1), data, CPU).choices  # saves nothing
    assert one_epoch["precompute_ref_log_probs"].value is False
    few_steps = RunConfig(max_steps=2, per_device_train_batch_size=4)
    assert plan(few_steps, data, CPU).choices["precompute_ref_log_probs"].value is False
    assert plan(few_steps, data, CPU, cache_hit=True).choices[
        "precompute_ref_log_probs"].value is True
    assert plan(RunConfig(method="qlora"), data, gpu(24)).choices[
        "precompute_ref_log_probs"].value is False


# ---------------------------------------------------------------------------------------
# CUDA choices, with a fake device
# ---------------------------------------------------------------------------------------
@pytest.fixture
def big_model(tmp_path) -> str:
    """A 1.5B-parameter Llama-shaped model folder (config only: no weights are read)."""
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"hidden_size": 2048, "num_hidden_layers": 24, "intermediate_size": 8192,
         "vocab_size": 32000, "num_attention_heads": 16, "num_key_value_heads": 16,
         "tie_word_embeddings": False}))
    return str(folder)


def cuda_plan(cfg: RunConfig, device: DeviceInfo, data: Lengths | None = None):
    return plan(cfg, data or spread(), device, lambda c: memory_gb(c, None, device))


def test_a_large_gpu_trains_without_checkpointing(monkeypatch):
    monkeypatch.setattr(planner, "installed", lambda module: False)
    p = cuda_plan(RunConfig(model=DEFAULT_SPEC, method="lora"), gpu(80))
    assert p.choices["gradient_checkpointing"].value is False
    assert "fit" in p.choices["gradient_checkpointing"].reason
    assert p.choices["attn_implementation"].value == "sdpa"
    assert "flash_attn is not installed" in p.choices["attn_implementation"].reason
    assert p.choices["use_liger_kernel"].value is False
    assert p.choices["precision"].value == "bf16" and not p.warnings


def test_checkpointing_only_when_memory_needs_it(big_model, monkeypatch):
    monkeypatch.setattr(planner, "installed", lambda module: False)
    long = lengths(*[(200, 800, 700)] * 16)
    cfg = RunConfig(model=big_model, method="full", per_device_train_batch_size=8)
    roomy = cuda_plan(cfg, gpu(141), long).choices["gradient_checkpointing"]
    tight = cuda_plan(cfg, gpu(40), long).choices["gradient_checkpointing"]
    assert roomy.value is False and tight.value is True
    assert "needed" in tight.reason and "40" not in roomy.reason


def test_flash_attention_and_liger_only_where_installed(monkeypatch):
    monkeypatch.setattr(planner, "installed", lambda module: True)
    p = cuda_plan(RunConfig(model=DEFAULT_SPEC), gpu(24))
    assert p.choices["attn_implementation"].value == "flash_attention_2"
    assert p.choices["use_liger_kernel"].value is True
    fp16 = cuda_plan(RunConfig(model=DEFAULT_SPEC), gpu(16, "fp16"))
    assert fp16.choices["attn_implementation"].value == "sdpa"  # FA2 wants bf16 here
    on_cpu = plan(RunConfig(), spread(), CPU)
    assert on_cpu.choices["attn_implementation"].value == "sdpa"
    assert on_cpu.choices["use_liger_kernel"].value is False


def test_a_gpu_too_small_for_full_fine_tuning_gets_lora_proposed_with_numbers(big_model):
    p = cuda_plan(RunConfig(model=big_model, method="full"), gpu(12))
    assert len(p.warnings) == 1
    text = p.warnings[0]
    assert "set method: lora" in text and "GB even with gradient checkpointing" in text
    full_gb, lora_gb = [float(x.split(" GB")[0]) for x in text.split("~")[1:3]]
    assert lora_gb < 12 * 0.85 < full_gb
    assert not cuda_plan(RunConfig(model=big_model, method="lora"), gpu(12)).warnings
    tiny_gpu = cuda_plan(RunConfig(model=big_model, method="full"), gpu(6)).warnings[0]
    assert "method: qlora" in tiny_gpu  # LoRA would not fit either


# ---------------------------------------------------------------------------------------
# TRL defaults, the same optimisation
# ---------------------------------------------------------------------------------------
def test_trl_defaults_gives_trl_s_values():
    p = plan(RunConfig(execution="trl-defaults"), spread(), CPU)
    for name in planner.PLANNED:
        assert p.choices[name].value == TRL_DEFAULTS[name], name
        assert p.choices[name].source == "trl-defaults"
    args, _ = to_trl(p.apply(RunConfig(execution="trl-defaults")), "/tmp/x", CPU)
    assert (args.max_length, args.activation_checkpointing, args.precompute_ref_log_probs,
            args.train_sampling_strategy, args.use_liger_kernel, args.torch_compile) == \
        (1024, True, False, "random", False, False)


@pytest.mark.parametrize("execution", ["lab", "trl-defaults"])
def test_the_optimisation_is_the_user_s_in_both_executions(execution):
    cfg = RunConfig(execution=execution, learning_rate=3e-5, beta=0.25,
                    per_device_train_batch_size=3, gradient_accumulation_steps=2,
                    num_train_epochs=2.0, seed=7, warmup_ratio=0.1, lr_scheduler_type="cosine")
    planned = plan(cfg, spread(), CPU).apply(cfg)
    for name in OPTIMISATION:
        assert getattr(planned, name) == getattr(cfg, name), name


def test_lab_plan_maps_onto_trl_with_length_grouping():
    cfg = RunConfig(per_device_train_batch_size=8, num_train_epochs=2)
    args, _ = to_trl(plan(cfg, spread(), CPU).apply(cfg), "/tmp/x", CPU)
    assert args.train_sampling_strategy == "group_by_length"
    assert args.length_column_name == "length"
    assert args.activation_checkpointing is False and args.precompute_ref_log_probs is True
    assert args.max_length == 104 and args.use_liger_kernel is False


def test_explain_names_each_choice_with_its_reason():
    lines = plan(RunConfig(per_device_train_batch_size=8, length_percentile=90), spread(),
                 CPU).explain()
    text = "\n".join(lines)
    for name in (*planner.PLANNED, "padding_free", "precision"):
        assert f"{name}: " in text, name
    assert "train pair(s) are longer than max_length" in text
    assert "padding:" in text and "grouped by length" in text


# ---------------------------------------------------------------------------------------
# Config fields
# ---------------------------------------------------------------------------------------
def test_auto_fields_take_auto_or_their_own_values_from_yaml():
    cfg = RunConfig.from_yaml("max_length: '512'\ngradient_checkpointing: 'true'\n"
                              "precompute_ref_log_probs: auto\nuse_liger_kernel: false\n")
    assert (cfg.max_length, cfg.gradient_checkpointing, cfg.precompute_ref_log_probs,
            cfg.use_liger_kernel) == (512, True, "auto", False)
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg


@pytest.mark.parametrize("field, value, fix", [
    ("execution", "fast", "lab, trl-defaults"),
    ("too_long", "cut", "drop"),
    ("length_percentile", 0, "(0, 100]"),
    ("batch_order", "sorted", "by_length"),
    ("attn_implementation", "flash", "flash_attention_2"),
    ("max_length", "long", "auto or a number"),
    ("gradient_checkpointing", "sometimes", "auto, true or false"),
    ("attn_implementation", "flash_attention_2", "needs a CUDA GPU"),
    ("use_liger_kernel", True, "need a CUDA GPU"),
])
def test_bad_execution_settings_name_the_field_and_the_fix(field, value, fix):
    with pytest.raises(ConfigError) as err:
        validate(RunConfig(model="m", dataset="d", **{field: value}), CPU)
    assert err.value.field == field and fix in err.value.fix


def test_a_config_from_before_the_planner_still_loads_and_maps(tmp_path):
    old = ("model: builtin:tiny\ndataset: toy\nmax_length: 64\ngradient_checkpointing: false\n"
           "precompute_ref_log_probs: false\n")
    cfg = RunConfig.from_yaml(old)
    assert (cfg.execution, cfg.batch_order, cfg.too_long) == ("lab", "auto", "drop")
    args, _ = to_trl(cfg, tmp_path, CPU)
    assert (args.max_length, args.train_sampling_strategy) == (64, "random")
    assert unplanned(RunConfig()).max_length == 1024


# ---------------------------------------------------------------------------------------
# A launch: the plan applied before freezing, too-long pairs never trained on silently
# ---------------------------------------------------------------------------------------
LONG_REPLY = "it is a very long answer that goes on " * 12


@pytest.fixture
def with_long_pair(store, workspace_with_tiny):
    ds = create_dataset(store, "toy")
    insert_pairs(store, ds.id, [Pair(f"{p} {i}", c, r, split="train")
                                for i in range(12) for p, c, r in [CHILD_ANSWERS[i % 4]]]
                 + [Pair("tell me a story", LONG_REPLY, "no .", split="train")])
    return ds


def frozen(store, run_id: str) -> tuple[Path, list[dict]]:
    run_dir = Path(runs.get_run(store, run_id)["run_dir"])
    rows = [json.loads(x) for x in (run_dir / "pairs.train.jsonl").read_text().splitlines()]
    return run_dir, rows


def test_a_pair_that_would_lose_its_completion_is_counted_and_left_out(store, with_long_pair):
    cfg = tiny_config(max_length=48, max_prompt_length=16, sample_prompts=0)
    shown = runs.plan_run(store, cfg)
    assert shown.too_long == 1 and "1 train pair(s) are longer than max_length 48" in \
        shown.too_long_line()
    run_id = runs.start_run(store, cfg, launch=False)
    run_dir, rows = frozen(store, run_id)
    assert len(rows) == 12 and not any(LONG_REPLY.strip() in r["chosen"] for r in rows)
    run = runs.get_run(store, run_id)
    assert run["result"]["plan"]["too_long"] == 1 and run["result"]["plan"]["dropped"] == 1
    assert json.loads((run_dir / "plan.json").read_text())["too_long"] == 1
    assert all(r["length"] <= 48 for r in rows)
    # truncate keeps it (TRL cuts it), still counted
    kept = runs.start_run(store, dataclasses.replace(cfg, too_long="truncate"), launch=False)
    _, rows = frozen(store, kept)
    assert len(rows) == 13 and runs.get_run(store, kept)["result"]["plan"]["too_long"] == 1


def test_auto_max_length_keeps_every_pair_whole(store, with_long_pair):
    run_id = runs.start_run(store, tiny_config(max_length="auto", sample_prompts=0),
                            launch=False)
    run_dir, rows = frozen(store, run_id)
    config = RunConfig.load(run_dir / "config.yaml")
    assert len(rows) == 13 and max(r["length"] for r in rows) <= config.max_length
    for name in ("max_length", "gradient_checkpointing", "precompute_ref_log_probs",
                 "batch_order", "attn_implementation", "use_liger_kernel", "torch_compile"):
        assert getattr(config, name) != "auto", name  # the frozen config is concrete
    plan_ = runs.read_plan(runs.get_run(store, run_id))
    assert plan_.choices["max_length"].value == config.max_length and plan_.too_long == 0
    assert plan_.requested["max_length"] == "auto"


def test_a_launch_keeps_the_optimisation_settings(store, with_long_pair):
    cfg = tiny_config(sample_prompts=0, max_steps=-1, num_train_epochs=2.0, seed=3,
                      beta=0.3, gradient_accumulation_steps=2, learning_rate=2e-4)
    for execution in ("lab", "trl-defaults"):
        run_id = runs.start_run(store, dataclasses.replace(cfg, execution=execution),
                                launch=False)
        config = RunConfig.load(frozen(store, run_id)[0] / "config.yaml")
        for name in OPTIMISATION:
            assert getattr(config, name) == getattr(cfg, name), (execution, name)


# ---------------------------------------------------------------------------------------
# The reference cache key: one test per part, through the frozen run folder
# ---------------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path) -> Path:
    run_dir = tmp_path / "run"
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    run_dir.mkdir()
    (run_dir / "model.json").write_text(json.dumps({"spec": "m", "path": str(model),
                                                    "fingerprint": "abc"}))
    (run_dir / "prompt_format.json").write_text(json.dumps({"kind": "plain"}))
    (run_dir / "pairs.train.jsonl").write_text('{"prompt": "p", "chosen": "a"}\n')
    return run_dir


def _rewrite_json(path: Path, **change) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))


def _rewrite_weights(run_dir: Path) -> None:
    weights = Path(json.loads((run_dir / "model.json").read_text())["path"]) / "model.safetensors"
    weights.write_bytes(b"WEIGHTS")  # same name and size: a model rewritten in place
    stat = weights.stat()
    import os
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


CHANGES = {
    "model fingerprint": lambda d, c: (_rewrite_json(d / "model.json", fingerprint="xyz"), c),
    "model weights": lambda d, c: (_rewrite_weights(d), c),
    "data": lambda d, c: ((d / "pairs.train.jsonl").write_text('{"prompt": "q"}\n'), c),
    "prompt format": lambda d, c: (_rewrite_json(d / "prompt_format.json", kind="chat"), c),
    "max_length": lambda d, c: (None, dataclasses.replace(c, max_length=128)),
    "max_prompt_length": lambda d, c: (None, dataclasses.replace(c, max_prompt_length=16)),
    "too_long": lambda d, c: (None, dataclasses.replace(c, too_long="truncate")),
    "precision": lambda d, c: (None, dataclasses.replace(c, precision="bf16")),
}


@pytest.mark.parametrize("part", CHANGES)
def test_a_changed_input_never_reuses_a_stale_cache(folder, part):
    cfg = RunConfig(max_length=64, max_prompt_length=32, precision="fp32")
    before = refcache.run_key(folder, "train", cfg, "torch.float32")
    assert refcache.run_key(folder, "train", cfg, "torch.float32") == before
    _, changed = CHANGES[part](folder, cfg)
    assert refcache.run_key(folder, "train", changed, "torch.float32") != before, part


def test_the_key_follows_the_weights_dtype_and_trl_s_truncation(folder):
    cfg = RunConfig(max_length=64)
    key = refcache.run_key(folder, "train", cfg, "torch.float32")
    assert refcache.run_key(folder, "train", cfg, "torch.bfloat16") != key
    assert refcache.run_key(folder, "train", cfg, "torch.float32", "keep_end") != key
    assert refcache.run_key(folder, "train", cfg, "torch.float32", ld_alpha=0.5) != key


# ---------------------------------------------------------------------------------------
# Length-grouped batches
# ---------------------------------------------------------------------------------------
def test_grouped_batches_depend_only_on_seed_and_epoch():
    data = [1 + (i * 37) % 97 for i in range(64)]
    first, again = epoch_grouped_sampler(data, 8, 42), epoch_grouped_sampler(data, 8, 42)
    epoch0 = list(first)
    assert sorted(epoch0) == list(range(64)) and list(again) == epoch0
    first.set_epoch(1)
    epoch1 = list(first)
    assert epoch1 != epoch0
    resumed = epoch_grouped_sampler(data, 8, 42)
    resumed.set_epoch(1)
    assert list(resumed) == epoch1  # a run resumed in epoch 1 sees epoch 1's batches

    def padding(order: list[int]) -> float:
        groups = [order[i:i + 8] for i in range(0, 64, 8)]
        return sum(max(data[j] for j in g) * len(g) - sum(data[j] for j in g) for g in groups)
    assert padding(epoch0) < 0.75 * padding(list(range(64)))
