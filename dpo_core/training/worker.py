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
import time
from pathlib import Path

from ..data.datasets import pair_texts
from ..errors import ConfigError, DataError, ModelError
from ..formats import as_messages, plain_text
from ..jobs.rows import get_job
from ..models import FORMAT_FILE, RUN_MODEL_FILE, load_tokenizer
from .callbacks import LabCallback, restart_checkpoint
from .checkpoints import RESUME_FILE
from .config import RunConfig, resolve_precision
from .freeze import MODEL_FILE, SPLIT_FILES
from .metrics import write_sample
from .planner import unplanned
from .refcache import trainer_class
from .trl_args import LENGTH_COLUMN, model_kwargs, quantization_config, to_trl


def train(config: dict, ctx) -> dict:
    """Train the run frozen in ctx.run_dir; returns the final metrics and the model folder."""
    from ..device import detect_device

    ctx.interruptible = True  # loading takes a while and nothing needs saving yet
    run_dir = ctx.run_dir
    cfg = unplanned(RunConfig.load(run_dir / "config.yaml"))  # concrete since the planner
    device = detect_device()
    try:
        args, peft_config = to_trl(cfg, run_dir, device)
    except (ValueError, TypeError) as exc:  # TRL/transformers refused a combination
        raise ConfigError(f"config.yaml was refused by TRL: {exc}",
                          "Fix the named field in the config and start a new run.") from exc
    model, tok, model_info = load_base_model(run_dir, cfg, device)
    train_set, eval_set = load_pairs(run_dir, cfg, tok)
    ctx.progress(*_frozen_progress(ctx), message="set up: the trainer is being built")
    callback = LabCallback(ctx.sink, ctx.job_id, progress=ctx.progress,
                           stop_flag=ctx.cancelled, sample_every=cfg.sample_every,
                           oom_at_step=cfg.debug.oom_at_step, step_delay=cfg.debug.step_delay,
                           write=ctx.main, metrics=not os.environ.get("DPO_LAB_BENCH_NO_WRITER"))
    built = time.perf_counter()  # tokenizing and the reference precompute happen in here
    trainer = lab_trainer(cfg, run_dir, ctx.workspace.cache)(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        processing_class=tok, peft_config=peft_config,
        callbacks=[callback, *early_stopping(cfg)])
    built = time.perf_counter() - built
    prompts = sample_prompts(ctx.store, run_dir, cfg)
    if prompts:
        callback.sampler = lambda step: write_samples(ctx, trainer, tok, prompts, step, cfg)
    ctx.interruptible = False
    if ctx.cancelled():
        return {}
    trainer.train(resume_from_checkpoint=restart_checkpoint(ctx) or resume_checkpoint(run_dir))
    if ctx.cancelled():
        return {}
    save_final(ctx, trainer, tok, cfg, model_info)
    step = trainer.state.global_step
    if ctx.main:
        if callback.sampler:
            callback.sample(step)
        ctx.progress(step, trainer.state.max_steps)
    return {"metrics": callback.last_logs, "final": str(run_dir / "final"),
            "trainer_build_s": round(built, 3), **best_of(trainer.state, cfg)}


def _frozen_progress(ctx) -> tuple[int, int]:
    """The run's step (a resume starts past 0) and total steps as frozen at launch; TRL's own
    count replaces them when training starts."""
    if ctx.store is None:  # a cluster job (channel): the step it resumes at, the frozen total
        return _resume_step(ctx.run_dir), int(json.loads(
            (ctx.run_dir / "job.json").read_text()).get("total_steps") or 1)
    row = get_job(ctx.store, ctx.job_id)
    return row["step"] or 0, row["total_steps"] or 1


def load_base_model(run_dir: Path, cfg: RunConfig, device):
    """The base model from its folder (so TRL can rebuild the reference from the same path)."""
    info = json.loads((run_dir / MODEL_FILE).read_text())
    path = info["path"]
    if path.startswith(("/", ".", "~")) and not Path(path).exists():
        raise ModelError(f"Model folder {path} for '{info['spec']}' no longer exists.",
                         "Restore the folder, or start a new run with an existing model.")
    return load_policy(path, cfg, device), load_tokenizer(path), info


def load_policy(path: str, cfg: RunConfig, device):
    """The model a run trains, in the dtype it trains in: fp32 master weights for LoRA (bf16
    runs autocast), bf16 weights for a bf16 full fine-tune, 4-bit NF4 for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch.float32, "use_safetensors": True, **model_kwargs(cfg)}
    quant = quantization_config(cfg)
    if quant is not None:
        kwargs.update(quantization_config=quant, dtype=torch.bfloat16)
    elif resolve_precision(cfg, device) == "bf16" and cfg.method == "full":
        kwargs["dtype"] = torch.bfloat16
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Could not load the model {path}: {exc}",
                         "Check that it is a complete model folder with safetensors.") from exc


def load_pairs(run_dir: Path, cfg: RunConfig, tok=None):
    """The frozen train (and eval) pairs as datasets for TRL; with batch_order by_length the
    train pairs carry their `length` in tokens (frozen with them, counted here for a folder
    frozen before)."""
    from datasets import Dataset

    grouped = cfg.batch_order == "by_length"

    def read(split: str) -> list[dict]:
        path = run_dir / SPLIT_FILES[split]
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                row = json.loads(line)
                rows.append({k: row[k] for k in ("prompt", "chosen", "rejected")})
                if grouped and split == "train":
                    rows[-1][LENGTH_COLUMN] = row.get(LENGTH_COLUMN) or pair_length(row, tok)
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


def pair_length(row: dict, tok) -> int:
    """A pair's longest sequence in tokens: prompt + its longer reply."""
    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    return count(row["prompt"]) + max(count(row["chosen"]), count(row["rejected"]))


def lab_trainer(cfg: RunConfig, run_dir: Path, cache_root: Path):
    """The trainer class of a run: DPOTrainer, through the reference cache when the reference
    log-probs are precomputed, with length-grouped batches when batch_order is by_length."""
    base = trainer_class(cfg, run_dir, cache_root)
    if cfg.batch_order != "by_length":
        return base
    seed = cfg.seed

    class GroupedDPOTrainer(base):
        """Batches of similar lengths, in an order that depends only on the seed and epoch."""

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return epoch_grouped_sampler(
                dataset[LENGTH_COLUMN],
                self.args.train_batch_size * self.args.gradient_accumulation_steps, seed)

        def _get_eval_sampler(self, eval_dataset):
            # evaluation keeps its order (transformers would group it too, by a column the
            # eval pairs do not have)
            from torch.utils.data import SequentialSampler

            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    return GroupedDPOTrainer


def epoch_grouped_sampler(lengths: list[int], group: int, seed: int):
    """transformers' LengthGroupedSampler (groups of `group` similar lengths, sorted within
    shuffled mega-batches) drawn from a generator seeded by seed + epoch: the global RNG it
    would use otherwise is not where it was when a run resumes, so the batches would differ."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class EpochGroupedSampler(LengthGroupedSampler):
        epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            generator = torch.Generator().manual_seed(seed + self.epoch)
            return iter(get_length_grouped_indices(self.lengths, self.batch_size,
                                                   generator=generator))

    return EpochGroupedSampler(group, lengths=list(lengths))


def _resume_step(run_dir: Path) -> int:
    f = run_dir / RESUME_FILE
    return int(json.loads(f.read_text()).get("step") or 0) if f.is_file() else 0


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


def sample_prompts(store, run_dir: Path, cfg: RunConfig) -> list[tuple[str, str]]:
    """(what a person reads, what the model is given) for the first eval (else train) pairs:
    the pair's own prompt without template tokens, and its rendered text."""
    if cfg.sample_prompts <= 0:
        return []
    for split in ("eval", "train"):
        lines = (run_dir / SPLIT_FILES[split]).read_text(encoding="utf-8").splitlines()
        if lines:
            rows = [json.loads(x) for x in lines[:cfg.sample_prompts]]
            shown = readable_prompts(store, [r.get("pair_id") for r in rows])
            return [(shown.get(r.get("pair_id")) or r["prompt"], r["prompt"]) for r in rows]
    return []


def readable_prompts(store, pair_ids: list) -> dict:
    """{pair id: its prompt as a person reads it (a conversation as `role: content` lines)}."""
    ids = [i for i in pair_ids if isinstance(i, int)]
    texts = pair_texts(store, ids) if ids and store is not None else {}
    return {i: plain_text(as_messages(t["prompt"]) or t["prompt"]) for i, t in texts.items()}


def write_samples(ctx, trainer, tok, prompts: list[tuple[str, str]], step: int,
                  cfg: RunConfig) -> None:
    """Greedy generations on fixed prompts, so runs can be compared by eye step by step."""
    import torch

    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        for shown, rendered in prompts:
            enc = tok(rendered, return_tensors="pt", add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=cfg.sample_max_new_tokens,
                                     do_sample=False, pad_token_id=tok.pad_token_id)
            text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            write_sample(ctx.sink, ctx.job_id, step, shown, text.strip())
    finally:
        model.train(was_training)


def early_stopping(cfg: RunConfig) -> list:
    if not cfg.early_stopping_patience:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience)]


def best_of(state, cfg: RunConfig) -> dict:
    """Which checkpoint the final model is when the run keeps its best one, and whether it
    stopped early."""
    if not cfg.metric_for_best_model or state.best_model_checkpoint is None:
        return {}
    best_step = int(Path(state.best_model_checkpoint).name.split("-")[-1])
    return {"best": {"step": best_step, "metric": cfg.metric_for_best_model,
                     "value": state.best_metric},
            "stopped_early": 0 < state.global_step < state.max_steps}


def _portable_spec(model_info: dict) -> str:
    """The base as a spec that loads elsewhere: builtin/run/hub specs as is, folders by path."""
    spec = model_info["spec"]
    return spec if spec.startswith(("builtin:", "run:")) or not Path(spec).exists() \
        else model_info["path"]
