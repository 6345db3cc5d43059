"""The training job's target: `train(config, ctx)`, run by the job process
(`python -m dpo_core.jobs.runner RUN_DIR`, under `accelerate launch` for several processes).

Reads only the run folder, trains with TRL's DPOTrainer and writes metrics and samples to the
store; progress, heartbeat and the final status go through the job context. SIGTERM before
training starts stops at once; during training it finishes the current step, writes a
checkpoint and ends cancelled. Under `accelerate launch` only the main process writes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import ConfigError, DataError, ModelError
from ..models import FORMAT_FILE, RUN_MODEL_FILE, load_tokenizer
from .callbacks import LabCallback
from .config import RunConfig, quantization_config, resolve_precision, to_trl
from .freeze import MODEL_FILE, SPLIT_FILES
from .metrics import write_sample
from .refcache import trainer_class
from .runs import RESUME_FILE


def train(config: dict, ctx) -> dict:
    """Train the run frozen in ctx.run_dir; returns the final metrics and the model folder."""
    from ..device import detect_device

    ctx.interruptible = True  # loading takes a while and nothing needs saving yet
    run_dir = ctx.run_dir
    cfg = RunConfig.load(run_dir / "config.yaml")
    device = detect_device()
    try:
        args, peft_config = to_trl(cfg, run_dir, device)
    except (ValueError, TypeError) as exc:  # TRL/transformers refused a combination
        raise ConfigError(f"config.yaml was refused by TRL: {exc}",
                          "Fix the named field in the config and start a new run.") from exc
    model, tok, model_info = load_base_model(run_dir, cfg, device)
    train_set, eval_set = load_pairs(run_dir, cfg)
    callback = LabCallback(ctx.store, ctx.job_id, progress=ctx.progress,
                           stop_flag=ctx.cancelled, sample_every=cfg.sample_every,
                           oom_at_step=cfg.debug.oom_at_step, step_delay=cfg.debug.step_delay,
                           write=ctx.main, metrics=not os.environ.get("DPO_LAB_BENCH_NO_WRITER"))
    trainer = trainer_class(cfg, run_dir, ctx.workspace.cache)(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        processing_class=tok, peft_config=peft_config, callbacks=[callback])
    prompts = sample_prompts(run_dir, cfg)
    callback.sampler = lambda step: write_samples(ctx, trainer, tok, prompts, step, cfg)
    ctx.interruptible = False
    if ctx.cancelled():
        return {}
    trainer.train(resume_from_checkpoint=resume_checkpoint(run_dir))
    if ctx.cancelled():
        return {}
    save_final(ctx, trainer, tok, cfg, model_info)
    step = trainer.state.global_step
    if ctx.main:
        write_samples(ctx, trainer, tok, prompts, step, cfg)
        ctx.progress(step, trainer.state.max_steps)
    return {"metrics": callback.last_logs, "final": str(run_dir / "final")}


def load_base_model(run_dir: Path, cfg: RunConfig, device):
    """The base model from its folder (so TRL can rebuild the reference from the same path)."""
    import torch
    from transformers import AutoModelForCausalLM

    info = json.loads((run_dir / MODEL_FILE).read_text())
    path = info["path"]
    if path.startswith(("/", ".", "~")) and not Path(path).exists():
        raise ModelError(f"Model folder {path} for '{info['spec']}' no longer exists.",
                         "Restore the folder, or start a new run with an existing model.")
    kwargs = {"dtype": torch.float32, "use_safetensors": True}
    quant = quantization_config(cfg)
    if quant is not None:
        kwargs.update(quantization_config=quant, dtype=torch.bfloat16)
    elif resolve_precision(cfg, device) == "bf16" and cfg.method == "full":
        kwargs["dtype"] = torch.bfloat16
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Could not load the model {path}: {exc}",
                         "Check that it is a complete model folder with safetensors.") from exc
    return model, load_tokenizer(path), info


def load_pairs(run_dir: Path, cfg: RunConfig):
    """The frozen train (and eval) pairs as datasets for TRL."""
    from datasets import Dataset

    def read(split: str) -> list[dict]:
        path = run_dir / SPLIT_FILES[split]
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                row = json.loads(line)
                rows.append({k: row[k] for k in ("prompt", "chosen", "rejected")})
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{path} line {n} is not a pair ({exc}).",
                                "Start a new run; the frozen pairs were damaged.") from exc
        return rows

    train_rows = read("train")
    if not train_rows:
        raise DataError("pairs.train.jsonl holds no pairs.", "Start a run on a dataset "
                        "whose train split has pairs.")
    eval_rows = read("eval") if cfg.eval_steps > 0 else []
    return Dataset.from_list(train_rows), (Dataset.from_list(eval_rows) if eval_rows else None)


def resume_checkpoint(run_dir: Path) -> str | None:
    f = run_dir / RESUME_FILE
    return json.loads(f.read_text()).get("checkpoint") if f.is_file() else None


def save_final(ctx, trainer, tok, cfg: RunConfig, model_info: dict) -> None:
    """final/: adapter or full weights + tokenizer + prompt format + base spec (atomic)."""
    final, work = ctx.run_dir / "final", ctx.run_dir / "final.tmp"
    trainer.save_model(str(work))
    if not ctx.main:
        return
    tok.save_pretrained(str(work))
    (work / FORMAT_FILE).write_text((ctx.run_dir / FORMAT_FILE).read_text())
    kind = "full" if cfg.method == "full" else "lora"
    (work / RUN_MODEL_FILE).write_text(json.dumps(
        {"base": _portable_spec(model_info), "kind": kind, "run_id": ctx.job_id}))
    if final.exists():
        shutil.rmtree(final)
    work.replace(final)


def sample_prompts(run_dir: Path, cfg: RunConfig) -> list[str]:
    if cfg.sample_prompts <= 0:
        return []
    for split in ("eval", "train"):
        lines = (run_dir / SPLIT_FILES[split]).read_text(encoding="utf-8").splitlines()
        if lines:
            return [json.loads(x)["prompt"] for x in lines[:cfg.sample_prompts]]
    return []


def write_samples(ctx, trainer, tok, prompts: list[str], step: int, cfg: RunConfig) -> None:
    """Greedy generations on fixed prompts, so runs can be compared by eye step by step."""
    import torch

    if not prompts:
        return
    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        for prompt in prompts:
            enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=cfg.sample_max_new_tokens,
                                     do_sample=False, pad_token_id=tok.pad_token_id)
            text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            write_sample(ctx.store, ctx.job_id, step, prompt, text)
    finally:
        model.train(was_training)


def _portable_spec(model_info: dict) -> str:
    """The base as a spec that loads elsewhere: builtin/run/hub specs as is, folders by path."""
    spec = model_info["spec"]
    return spec if spec.startswith(("builtin:", "run:")) or not Path(spec).exists() \
        else model_info["path"]
