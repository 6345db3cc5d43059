"""Run configuration: dataclasses with help text, YAML in and out, overrides, validation, and the
one mapping to TRL's `DPOConfig` and PEFT's `LoraConfig`."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from ..data.datasets import count_pairs, get_dataset, split_counts
from ..device import detect_device
from ..errors import ConfigError, ModelError, NotFoundError
from ..fields import build, check, setting
from ..formats import PromptFormat
from ..models import DEFAULT_SPEC, resolve_path

METHODS = ("full", "lora", "qlora")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
REPORTERS = ("wandb", "tensorboard", "trackio")
# Projection layers of Llama/Qwen/Mistral-style models (the QLoRA paper adapts all of them).
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    """LoRA adapter shape (used by method lora and qlora)."""

    r: int = setting(16, "LoRA rank: size of the low-rank update. 8-64 is typical.")
    alpha: float = setting(32.0, "LoRA scaling numerator (update is scaled by alpha / r). Often 2 x r.")
    dropout: float = setting(0.05, "Dropout on the LoRA input, in [0, 1).")
    target_modules: list[str] | str = setting(
        "all-linear", "Modules that get adapters: 'all-linear', or a list such as [q_proj, v_proj].")


@dataclass
class DebugSettings:
    """Testing hooks; leave at 0 for real runs."""

    oom_at_step: int = setting(0, "Testing only: raise a simulated out-of-memory error at this step.")
    step_delay: float = setting(0.0, "Testing only: sleep this many seconds after each step.")


@dataclass
class RunConfig:
    """Everything one DPO run needs; frozen as config.yaml in the run folder."""

    name: str = setting("", "A label for the run (shown in the runs list).")
    model: str = setting(DEFAULT_SPEC, "Model spec: a folder, a hub id, builtin:..., or run:<id>.")
    dataset: str = setting("", "Dataset name (or id) in this workspace.")
    train_split: str = setting("train", "Split of the dataset to train on.")
    eval_split: str = setting("eval", "Split used for evaluation during training; '' for none.")
    prompt_format: str | dict = setting(
        "auto", "'auto' (the dataset's, else the model's), or a format such as "
                "{kind: plain, template: '{prompt}', separator: ' '}.")
    max_train_pairs: int = setting(0, "Use only the first N train pairs (0 = all).")
    max_eval_pairs: int = setting(0, "Use only the first N eval pairs (0 = all).")
    method: str = setting("lora", "Training type: full (all weights), lora, or qlora (4-bit, CUDA only).")
    lora: LoraSettings = setting(LoraSettings(), "LoRA adapter settings (lora and qlora).")
    loss_type: str = setting("sigmoid", "DPO loss: any loss the installed TRL accepts "
                                   "(sigmoid, ipo, hinge, robust, ...).")
    beta: float = setting(0.1, "Strength of the pull towards the reference model (higher = stay closer).")
    label_smoothing: float = setting(0.0, "Assumed label noise for robust/exo losses, in [0, 0.5).")
    learning_rate: float = setting(5e-6, "Peak learning rate.")
    lr_scheduler_type: str = setting("linear", "Scheduler: linear, cosine, constant, ...")
    warmup_steps: int = setting(0, "Warm-up steps (used when > 0; else warmup_ratio).")
    warmup_ratio: float = setting(0.0, "Warm-up as a fraction of all steps, in [0, 1).")
    per_device_train_batch_size: int = setting(4, "Pairs per device per forward pass.")
    per_device_eval_batch_size: int = setting(4, "Pairs per device per evaluation pass.")
    gradient_accumulation_steps: int = setting(1, "Forward passes summed per optimizer step.")
    max_steps: int = setting(-1, "Optimizer steps to train (> 0 overrides num_train_epochs).")
    num_train_epochs: float = setting(1.0, "Passes over the train pairs (when max_steps is -1).")
    max_length: int = setting(512, "Longest prompt + reply in tokens; longer ones are truncated.")
    max_prompt_length: int = setting(256, "Prompts longer than this keep their last N tokens (0 = off).")
    gradient_checkpointing: bool = setting(False, "Recompute activations to save memory (~20% slower).")
    precision: str = setting("auto", "auto (from the device), bf16, fp16 or fp32.")
    seed: int = setting(42, "Random seed (data order, adapter init).")
    logging_steps: int = setting(10, "Log metrics every N optimizer steps.")
    eval_steps: int = setting(0, "Evaluate on the eval split every N steps (0 = never).")
    save_steps: int = setting(500, "Write a checkpoint every N steps (the run can resume from it).")
    save_total_limit: int = setting(0, "Keep only the last N checkpoints (0 = keep all).")
    precompute_ref_log_probs: bool = setting(False, "Compute reference log-probs once before training "
                                               "(saves memory for full fine-tuning).")
    report_to: list[str] = setting([], "Optional mirrors: wandb, tensorboard, trackio. "
                                  "The lab's store always keeps the metrics.")
    sample_prompts: int = setting(2, "How many fixed eval prompts to generate samples for.")
    sample_every: int = setting(0, "Generate samples every N steps (0 = only at the end).")
    sample_max_new_tokens: int = setting(32, "Length of each sample generation in tokens.")
    num_processes: int = setting(1, "Processes for `accelerate launch` (DDP): one per GPU; > 1 on CPU "
                               "runs gloo processes (for testing).")
    accelerate_config: str = setting("", "An accelerate config file (FSDP/DeepSpeed/DDP) to launch "
                                    "the worker with; '' for none.")
    debug: DebugSettings = setting(DebugSettings(), "Testing hooks.")

    # -- YAML --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: dict | None) -> RunConfig:
        return build(cls, data or {})

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> RunConfig:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}",
                              "Fix the YAML syntax (indentation, colons, quotes).") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{source} holds a {type(data).__name__}, not a mapping of fields.",
                              "Write one 'field: value' per line.")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Config file {path} does not exist.",
                              "Pass a YAML file, e.g. recipes/train/cpu-quick-demo.yaml.")
        return cls.from_yaml(path.read_text(), str(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


def apply_overrides(cfg: RunConfig, overrides: list[str] | None) -> RunConfig:
    """A copy of `cfg` with `key=value` overrides applied (dotted keys reach nested settings)."""
    data = cfg.to_dict()
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"Override '{item}' has no '='.", "Write --set key=value, "
                              "e.g. --set beta=0.2 or --set lora.r=8.")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"Override key '{key}': '{part}' is not a group of settings.",
                                  "Use a dotted key only for nested settings such as lora.r.")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"Unknown config field '{key}'.",
                              f"Use one of: {', '.join(sorted(node))}.", field=key)
        node[parts[-1]] = value
    return RunConfig.from_dict(data)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def accepted_loss_types() -> tuple[str, ...]:
    """The loss types the installed TRL accepts, read from DPOConfig's own help text."""
    from trl import DPOConfig

    text = DPOConfig.__dataclass_fields__["loss_type"].metadata.get("help", "")
    text = text.split("Possible values are:", 1)[-1].split(". If", 1)[0]
    return tuple(re.findall(r"'([a-z_]+)'", text)) or ("sigmoid",)


def validate(cfg: RunConfig, device=None, store=None, workspace=None) -> RunConfig:
    """Check numbers and combinations before anything starts; raises ConfigError naming the field.

    With a store it also checks the dataset (exists, has train pairs) and that the model resolves.
    """
    for part in (_check_choices, _check_counts, _check_schedule, _check_lora):
        part(cfg)
    _check_device(cfg, device or detect_device())
    if store is not None:
        _check_dataset(cfg, store)
        _check_model(cfg, workspace)
    return cfg


def _check_choices(c: RunConfig) -> None:
    check(c.method in METHODS, "method", c.method, f"Use one of: {', '.join(METHODS)}.")
    check(c.precision in PRECISIONS, "precision", c.precision,
          f"Use one of: {', '.join(PRECISIONS)}.")
    check(bool(c.model.strip()), "model", c.model, f"Name a model, e.g. {DEFAULT_SPEC}.")
    check(bool(c.dataset.strip()), "dataset", c.dataset,
          "Name a dataset of this workspace (python -m dpo_core data list).")
    check(bool(c.train_split.strip()), "train_split", c.train_split, "Use e.g. train.")
    check(0 < c.learning_rate < 1, "learning_rate", c.learning_rate,
          "Use a positive value below 1, e.g. 5e-6 (full) or 5e-5 (LoRA).")
    check(c.beta > 0, "beta", c.beta, "Use a positive value, e.g. 0.1.")
    check(0 <= c.label_smoothing < 0.5, "label_smoothing", c.label_smoothing,
          "Use a value in [0, 0.5), e.g. 0.1 for the robust loss.")
    check(c.loss_type in accepted_loss_types(), "loss_type", c.loss_type,
          f"The installed TRL accepts: {', '.join(accepted_loss_types())}.")
    if c.loss_type == "exo_pair":
        check(c.label_smoothing > 0, "label_smoothing", c.label_smoothing,
              "The exo_pair loss needs label_smoothing > 0 (the paper uses 1e-3).")
    for name in c.report_to:
        check(name in REPORTERS, "report_to", c.report_to, f"Use any of: {', '.join(REPORTERS)}.")
    if not isinstance(c.prompt_format, str) or c.prompt_format != "auto":
        check(isinstance(c.prompt_format, dict), "prompt_format", c.prompt_format,
              "Use 'auto' or a mapping such as {kind: plain, template: '{prompt}'}.")
        PromptFormat.from_dict(c.prompt_format)  # raises ConfigError naming the bad key


def _check_counts(c: RunConfig) -> None:
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size",
                 "gradient_accumulation_steps", "logging_steps", "save_steps"):
        check(getattr(c, name) >= 1, name, getattr(c, name), "Use a whole number >= 1.")
    for name in ("warmup_steps", "eval_steps", "save_total_limit", "max_train_pairs",
                 "max_eval_pairs", "sample_every", "sample_prompts", "max_prompt_length"):
        check(getattr(c, name) >= 0, name, getattr(c, name), "Use 0 or a positive whole number.")
    check(c.num_processes >= 1, "num_processes", c.num_processes, "Use 1, or one per GPU.")
    if c.accelerate_config:
        check(Path(c.accelerate_config).expanduser().is_file(), "accelerate_config",
              c.accelerate_config, "Point at an existing accelerate config YAML, or use ''.")
    check(c.max_length >= 8, "max_length", c.max_length, "Use at least 8 tokens, e.g. 512.")
    check(c.max_prompt_length < c.max_length, "max_prompt_length", c.max_prompt_length,
          f"Keep it below max_length ({c.max_length}) so replies have room, e.g. "
          f"{c.max_length // 2}.")
    check(c.sample_max_new_tokens >= 1, "sample_max_new_tokens", c.sample_max_new_tokens,
          "Use a positive number of tokens.")


def _check_schedule(c: RunConfig) -> None:
    check(0 <= c.warmup_ratio < 1, "warmup_ratio", c.warmup_ratio, "Use a value in [0, 1).")
    check(c.max_steps > 0 or c.max_steps == -1, "max_steps", c.max_steps,
          "Use a positive number of steps, or -1 to train for num_train_epochs.")
    if c.max_steps == -1:
        check(c.num_train_epochs > 0, "num_train_epochs", c.num_train_epochs,
              "Use a positive number of epochs, or set max_steps.")
    if c.eval_steps > 0:
        check(bool(c.eval_split.strip()), "eval_split", c.eval_split,
              "eval_steps > 0 needs an eval split (e.g. eval), or set eval_steps: 0.")


def _check_lora(c: RunConfig) -> None:
    if c.method not in ("lora", "qlora"):
        return
    check(c.lora.r >= 1, "lora.r", c.lora.r, "Use a rank >= 1, e.g. 16.")
    check(c.lora.alpha > 0, "lora.alpha", c.lora.alpha, "Use a positive value, e.g. 2 x r.")
    check(0 <= c.lora.dropout < 1, "lora.dropout", c.lora.dropout, "Use a value in [0, 1).")
    check(bool(c.lora.target_modules), "lora.target_modules", c.lora.target_modules,
          "Use 'all-linear' or a list such as [q_proj, v_proj].")


def _check_device(c: RunConfig, device) -> None:
    if c.method == "qlora":
        check(device.kind == "cuda", "method", c.method,
              f"QLoRA (4-bit) needs a CUDA GPU and this machine has {device.kind}; "
              "use method: lora.")
    if c.precision == "fp16":
        check(device.kind != "cpu", "precision", c.precision,
              "fp16 training needs a GPU; use auto or fp32.")


def _check_dataset(c: RunConfig, store) -> None:
    try:
        ds = get_dataset(store, c.dataset)
    except NotFoundError as exc:
        raise ConfigError(f"dataset is {c.dataset!r}: {exc.message}", exc.fix,
                          field="dataset") from exc
    n = count_pairs(store, ds.id, c.train_split)
    if n == 0:
        splits = list(split_counts(store, ds.id))
        raise ConfigError(f"Dataset '{ds.name}' has 0 pairs in train_split {c.train_split!r}.",
                          f"Set train_split to one of: {', '.join(splits) or '(none yet)'}; "
                          "or import pairs into it first.", field="train_split")
    if c.eval_steps > 0 and count_pairs(store, ds.id, c.eval_split) == 0:
        raise ConfigError(f"eval_steps is {c.eval_steps} but dataset '{ds.name}' has 0 pairs in "
                          f"eval_split {c.eval_split!r}.",
                          "Split the dataset (python -m dpo_core data split), or set eval_steps: 0.",
                          field="eval_steps")


def _check_model(c: RunConfig, workspace) -> None:
    if c.model.startswith("builtin:") and c.model in (DEFAULT_SPEC, "builtin:tiny",
                                                      "builtin:smollm2"):
        return  # prepared on first use
    try:
        resolve_path(c.model, workspace)
    except ModelError as exc:
        raise ConfigError(f"model is {c.model!r}: {exc.message}", exc.fix, field="model") from exc


def resolve_precision(cfg: RunConfig, device) -> str:
    """The precision a run uses: the configured one, or the device's when 'auto'."""
    return device.precision if cfg.precision == "auto" else cfg.precision


# ---------------------------------------------------------------------------------------
# The one mapping to TRL and PEFT
# ---------------------------------------------------------------------------------------
def to_trl(cfg: RunConfig, run_dir: str | Path, device) -> tuple:
    """(DPOConfig, LoraConfig | None) for this run; the only place that builds TRL/PEFT configs."""
    from trl import DPOConfig

    precision = resolve_precision(cfg, device)
    warmup = cfg.warmup_steps if cfg.warmup_steps > 0 else cfg.warmup_ratio
    eval_on = cfg.eval_steps > 0 and bool(cfg.eval_split)
    args = DPOConfig(
        output_dir=str(Path(run_dir) / "checkpoints"),
        run_name=cfg.name or None,
        loss_type=[cfg.loss_type], beta=cfg.beta, label_smoothing=cfg.label_smoothing,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=warmup,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_steps=cfg.max_steps, num_train_epochs=cfg.num_train_epochs,
        max_length=cfg.max_length,
        activation_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing=None,  # the deprecated alias; TRL's default True would win
        bf16=precision == "bf16", fp16=precision == "fp16",
        use_cpu=device.kind == "cpu",
        seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=cfg.logging_steps, logging_first_step=False,
        eval_strategy="steps" if eval_on else "no",
        eval_steps=cfg.eval_steps if eval_on else None,
        save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit or None,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        use_liger_kernel=False,  # cannot combine with precompute_ref_log_probs in TRL 1.16
        report_to=list(cfg.report_to) or "none",
        disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
    )
    return args, lora_config(cfg)


def lora_config(cfg: RunConfig):
    """PEFT's LoraConfig for lora/qlora runs, None for full fine-tuning."""
    if cfg.method == "full":
        return None
    from peft import LoraConfig

    targets = cfg.lora.target_modules
    if isinstance(targets, str) and targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if isinstance(targets, list) and targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")


def quantization_config(cfg: RunConfig):
    """bitsandbytes 4-bit settings for QLoRA (NF4, double quantization, bf16 compute)."""
    if cfg.method != "qlora":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)
