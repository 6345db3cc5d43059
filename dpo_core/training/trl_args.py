"""The one mapping from a RunConfig to TRL's `DPOConfig`, PEFT's `LoraConfig` and
bitsandbytes' 4-bit settings: no other module builds them."""

from __future__ import annotations

from pathlib import Path

from .config import AUTO, RunConfig, resolve_precision
from .planner import unplanned


def to_trl(cfg: RunConfig, run_dir: str | Path, device) -> tuple:
    """(DPOConfig, LoraConfig | None) for this run; the only place that builds TRL/PEFT configs."""
    from trl import DPOConfig

    cfg = unplanned(cfg)  # a folder frozen before the planner, or a recipe mapped on its own
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
        load_best_model_at_end=bool(cfg.metric_for_best_model) and eval_on,
        metric_for_best_model=(cfg.metric_for_best_model or None) if eval_on else None,
        greater_is_better=(not cfg.metric_for_best_model.endswith("loss"))
        if cfg.metric_for_best_model and eval_on else None,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        # by_length: transformers' length-grouped order over the `length` column the worker
        # adds (the lab's trainer seeds it per epoch, so a resume replays the same batches)
        train_sampling_strategy="group_by_length" if cfg.batch_order == "by_length"
        else "random", length_column_name=LENGTH_COLUMN,
        report_to=list(cfg.report_to) or "none",
        disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
        **kernels(cfg),
    )
    return args, lora_config(cfg)


LENGTH_COLUMN = "length"


def kernels(cfg: RunConfig) -> dict:
    """Liger kernels and torch.compile, passed only where the plan (or the user) turned them on,
    so TRL's own defaults and warnings stay as they are otherwise."""
    out = {}
    if cfg.use_liger_kernel is True:
        out["use_liger_kernel"] = True
    if cfg.torch_compile is True:
        out["torch_compile"] = True
    return out


def model_kwargs(cfg: RunConfig) -> dict:
    """Keyword arguments for loading the model: the attention kernel, when one is chosen."""
    return {} if cfg.attn_implementation == AUTO else {
        "attn_implementation": cfg.attn_implementation}


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
