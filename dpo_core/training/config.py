"""Run configuration: dataclasses with help text, YAML in and out, overrides and validation
(the mapping to TRL's and PEFT's own configs is `trl_args.py`)."""

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
AUTO = "auto"
EXECUTIONS = ("lab", "trl-defaults")
TOO_LONG = ("drop", "truncate")
BATCH_ORDERS = ("auto", "random", "by_length")
ATTENTION = ("auto", "eager", "sdpa", "flash_attention_2")
# fields that take 'auto' (the execution planner chooses) besides a value of their own type
AUTO_FIELDS = ("max_length", "gradient_checkpointing", "precompute_ref_log_probs",
               "use_liger_kernel", "torch_compile")
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
    max_length: int | str = setting(
        "auto", "Longest prompt + reply in tokens: 'auto' (the longest train pair, or "
                "length_percentile of them) or a number. Pairs longer than it follow too_long.")
    max_prompt_length: int = setting(256, "Prompts longer than this keep their last N tokens (0 = off).")
    gradient_checkpointing: bool | str = setting(
        "auto", "Recompute activations to save memory (~30% slower): 'auto' (only when the "
                "estimate says memory needs it), true or false.")
    precision: str = setting("auto", "auto (from the device), bf16, fp16 or fp32.")
    seed: int = setting(42, "Random seed (data order, adapter init).")
    logging_steps: int = setting(10, "Log metrics every N optimizer steps.")
    eval_steps: int = setting(0, "Evaluate on the eval split every N steps (0 = never).")
    save_steps: int = setting(500, "Write a checkpoint every N steps (the run can resume from it).")
    save_total_limit: int = setting(0, "Keep only the last N checkpoints (0 = keep all).")
    metric_for_best_model: str = setting(
        "", "Keep the best checkpoint by this eval metric as the final model: eval_loss (lower is "
            "better) or eval_rewards/accuracies, eval_rewards/margins (higher); '' = the last.")
    early_stopping_patience: int = setting(
        0, "Stop when metric_for_best_model has not improved for this many evaluations "
           "(0 = never).")
    precompute_ref_log_probs: bool | str = setting(
        "auto", "Compute the reference log-probs once before training and reuse them across "
                "epochs, resumes and sweeps: 'auto' (when the run passes over its pairs), true "
                "or false.")
    execution: str = setting("lab", "lab (each 'auto' setting planned from the data, model and "
                             "device, with a reason) or trl-defaults (TRL 1.16's own, to "
                             "compare). The optimisation is the same either way.")
    too_long: str = setting("drop", "Train pairs longer than max_length: drop (left out, "
                            "counted) or truncate (the reply's end cut, as TRL does).")
    length_percentile: float = setting(
        100.0, "max_length 'auto' covers this percentile of the train pairs' lengths (100 = "
               "the longest; lower ones drop or cut the longest pairs, see too_long).")
    batch_order: str = setting("auto", "auto, random, or by_length (batches of similar lengths, "
                               "shuffled in groups: less padding).")
    attn_implementation: str = setting("auto", "Attention kernel: auto, eager, sdpa or "
                                       "flash_attention_2 (flash-attn and a CUDA GPU).")
    use_liger_kernel: bool | str = setting("auto", "Liger's Triton kernels (CUDA, liger-kernel "
                                           "installed): auto, true or false.")
    torch_compile: bool | str = setting("auto", "torch.compile the model: auto (off: DPO batches "
                                        "change shape), true or false.")
    report_to: list[str] = setting([], "Optional mirrors: wandb, tensorboard, trackio. "
                                  "The lab's store always keeps the metrics.")
    sample_prompts: int = setting(2, "How many fixed eval prompts to generate samples for.")
    sample_every: int = setting(0, "Generate samples every N steps (0 = only at the end).")
    sample_max_new_tokens: int = setting(32, "Length of each sample generation in tokens.")
    num_processes: int = setting(1, "Processes for `accelerate launch` (DDP): one per GPU; > 1 on CPU "
                               "runs gloo processes (for testing).")
    accelerate_config: str = setting("", "An accelerate config file (FSDP/DeepSpeed/DDP) to launch "
                                    "the worker with; '' for none.")
    stall_multiple: float = setting(10.0, "Warn when the step has not moved for this many times "
                                          "the measured step time (0 = never).")
    first_progress_timeout_min: float = setting(30.0, "Fail the run when it has not finished "
                                                      "setting up (model loaded, processes "
                                                      "joined) after this many minutes "
                                                      "(0 = never).")
    target: str = setting("local", "Where it trains: local, or a cluster target (Settings).")
    debug: DebugSettings = setting(DebugSettings(), "Testing hooks.")

    def __post_init__(self) -> None:  # YAML/form text gives "512" or "true" besides 'auto'
        for name in AUTO_FIELDS:
            setattr(self, name, auto_value(getattr(self, name)))

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


def auto_value(value):
    """'auto', or the value as a bool or a whole number when it is written as text."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text is None or text == AUTO:
        return value if text is None else AUTO
    if text in ("true", "yes", "on", "false", "no", "off"):
        return text in ("true", "yes", "on")
    return int(text) if text.isdigit() else value  # anything else: validate names the field


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


# --- Validation -------------------------------------------------------------------------
@lru_cache(maxsize=1)
def accepted_loss_types() -> tuple[str, ...]:
    """The loss types the installed TRL accepts, read from DPOConfig's own help text."""
    from trl import DPOConfig

    text = DPOConfig.__dataclass_fields__["loss_type"].metadata.get("help", "")
    text = text.split("Possible values are:", 1)[-1].split(". If", 1)[0]
    return tuple(re.findall(r"'([a-z_]+)'", text)) or ("sigmoid",)


def validate(cfg: RunConfig, device=None, store=None, workspace=None) -> RunConfig:
    """Check numbers and combinations before anything starts; raises ConfigError naming the field.
    With a store it also checks the dataset and the model. A cluster run's device is not this
    machine's (Slurm's request says what it gets), so only a local run is checked against it."""
    for part in (_check_choices, _check_execution, _check_counts, _check_schedule, _check_lora):
        part(cfg)
    if cfg.target == "local":
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


def _check_execution(c: RunConfig) -> None:
    """The execution settings: each a value of its own or 'auto' (the planner chooses)."""
    check(c.execution in EXECUTIONS, "execution", c.execution,
          f"Use one of: {', '.join(EXECUTIONS)}.")
    check(c.too_long in TOO_LONG, "too_long", c.too_long,
          "Use drop (leave longer pairs out) or truncate (cut their replies, as TRL does).")
    check(0 < c.length_percentile <= 100, "length_percentile", c.length_percentile,
          "Use a percentile in (0, 100], e.g. 100 (the longest pair) or 99.")
    check(c.batch_order in BATCH_ORDERS, "batch_order", c.batch_order,
          f"Use one of: {', '.join(BATCH_ORDERS)}.")
    check(c.attn_implementation in ATTENTION, "attn_implementation", c.attn_implementation,
          f"Use one of: {', '.join(ATTENTION)}.")
    check(c.max_length == AUTO or type(c.max_length) is int, "max_length", c.max_length,
          "Use auto or a number of tokens, e.g. 512.")
    for name in AUTO_FIELDS[1:]:
        value = getattr(c, name)
        check(value == AUTO or isinstance(value, bool), name, value, "Use auto, true or false.")


def _check_counts(c: RunConfig) -> None:
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size",
                 "gradient_accumulation_steps", "logging_steps", "save_steps"):
        check(getattr(c, name) >= 1, name, getattr(c, name), "Use a whole number >= 1.")
    for name in ("warmup_steps", "eval_steps", "save_total_limit", "max_train_pairs",
                 "max_eval_pairs", "sample_every", "sample_prompts", "max_prompt_length"):
        check(getattr(c, name) >= 0, name, getattr(c, name), "Use 0 or a positive whole number.")
    check(c.num_processes >= 1, "num_processes", c.num_processes, "Use 1, or one per GPU.")
    check(c.stall_multiple >= 0, "stall_multiple", c.stall_multiple, "Use 0 (off) or e.g. 10.")
    check(c.first_progress_timeout_min >= 0, "first_progress_timeout_min",
          c.first_progress_timeout_min, "Use 0 (no limit) or minutes, e.g. 30.")
    if c.accelerate_config:
        check(Path(c.accelerate_config).expanduser().is_file(), "accelerate_config",
              c.accelerate_config, "Point at an existing accelerate config YAML, or use ''.")
    if c.max_length != AUTO:
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
    _check_best(c)


BEST_METRICS = ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins")


def _check_best(c: RunConfig) -> None:
    check(c.early_stopping_patience >= 0, "early_stopping_patience", c.early_stopping_patience,
          "Use 0 (never stop early) or a number of evaluations, e.g. 3.")
    if c.early_stopping_patience:
        check(bool(c.metric_for_best_model), "early_stopping_patience",
              c.early_stopping_patience, "Early stopping watches metric_for_best_model: set it "
              "too, e.g. eval_loss.")
    if not c.metric_for_best_model:
        return
    check(c.metric_for_best_model in BEST_METRICS, "metric_for_best_model",
          c.metric_for_best_model, f"Use one of: {', '.join(BEST_METRICS)}.")
    check(c.eval_steps > 0, "eval_steps", c.eval_steps,
          "The best checkpoint is chosen at evaluations: set eval_steps (e.g. 50).")
    check(c.save_steps % c.eval_steps == 0, "save_steps", c.save_steps,
          f"A checkpoint must be written at each evaluation: use a multiple of eval_steps "
          f"({c.eval_steps}), e.g. {c.eval_steps}.")


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
        check(device.kind == "cuda", "method", c.method, "QLoRA (4-bit) needs a CUDA GPU and "
              f"this machine has {device.kind}; use method: lora.")
    if c.precision == "fp16":
        check(device.kind != "cpu", "precision", c.precision,
              "fp16 training needs a GPU; use auto or fp32.")
    if c.attn_implementation == "flash_attention_2":
        check(device.kind == "cuda", "attn_implementation", c.attn_implementation,
              f"FlashAttention 2 needs a CUDA GPU and this machine has {device.kind}; use auto.")
    if c.use_liger_kernel is True:
        check(device.kind == "cuda", "use_liger_kernel", c.use_liger_kernel,
              f"Liger's kernels need a CUDA GPU and this machine has {device.kind}; use auto.")


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
