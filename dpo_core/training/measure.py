"""Time a run's step on this machine before launching it, the way the run itself will step:
TRL's DPOTrainer, built as the worker builds it (the model in its training dtype, the run's
adapters, TRL arguments from `trl_args.to_trl`), trains a few steps on a seeded sample of the
run's own rendered train pairs. Each micro-step is timed from the trainer's step callbacks; the
first is a warm-up, the median of the others (times gradient accumulation) is the step time, and
the fastest and slowest give its range. Evaluation batches, sample tokens and checkpoint writes
are timed once each, so `estimate.whole_run` can add up the whole run."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..data.datasets import get_dataset
from ..device import detect_device
from ..errors import ConfigError
from ..models import load_tokenizer, resolve_path
from ..store import open_store
from ..workspace import get_workspace
from .config import RunConfig
from .freeze import prompt_format_for, render_pairs

WARMUP = 1
POOL = 64  # pairs rendered to draw the timed batches from
MAX_REPEATS = 12  # short steps are timed more often (their noise is larger) ...
BUDGET_S = 5.0    # ... until this much time went into timed steps


@dataclass
class Measured:
    """Seconds on this machine for the parts of a run (medians; low/high over the repeats)."""

    step_s: float
    step_low_s: float
    step_high_s: float
    load_s: float            # a job's start: its process and imports, loading the model and
                             # building the trainer (and the reference, for full runs)
    ref_pair_s: float        # precomputing one pair's reference log-probs (0 when not used)
    eval_batch_s: float      # one evaluation batch: policy and reference forward passes
    token_s: float           # one generated token of a sample
    checkpoint_s: float      # writing one checkpoint (trained weights + optimizer state)
    repeats: int

    def to_dict(self) -> dict:
        return asdict(self)


class _StepTimer:
    """A trainer callback noting how long each optimizer step takes; it stops training once
    `repeats` steps past the warm-up are timed and BUDGET_S is spent (or MAX_REPEATS reached)."""

    def __init__(self, repeats: int):
        self.repeats = repeats
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kw):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.seconds.append(time.perf_counter() - self._start)
        timed = self.seconds[WARMUP:]
        if len(timed) >= self.repeats and sum(timed) >= BUDGET_S:
            control.should_training_stop = True


def measure(cfg: RunConfig, workspace=None, store=None, device=None, repeats: int = 3,
            progress=None) -> Measured:
    """Train real steps of `cfg` on a sample of its pairs (a warm-up, then at least `repeats`,
    more while they are short); time them."""
    from transformers import TrainerCallback
    from trl import DPOTrainer

    from .trl_args import to_trl
    from .worker import load_policy

    device = device or detect_device()
    ws = workspace or get_workspace()
    say = progress or (lambda message: None)
    path = resolve_path(cfg.model, ws)
    tok = load_tokenizer(path)
    rows = _sample(cfg, store or open_store(ws.db_path), path, tok, max(repeats, MAX_REPEATS))
    say("timing a job's start (a fresh process importing the trainer) ...")
    start_s = _process_start()
    most = max(repeats, MAX_REPEATS)
    timed = dataclasses.replace(cfg, gradient_accumulation_steps=1, max_steps=WARMUP + most,
                                logging_steps=1, eval_steps=0, save_steps=10**6,
                                report_to=[], sample_prompts=0, batch_order="random")
    scratch = Path(tempfile.mkdtemp(prefix="measure-", dir=_scratch(ws)))
    try:
        started = time.perf_counter()
        say(f"loading {cfg.model} and building the trainer ...")
        args, peft_config = to_trl(timed, scratch, device)
        args.save_strategy = "no"
        timer = type("Timer", (_StepTimer, TrainerCallback), {})(repeats)
        from datasets import Dataset

        trainer = DPOTrainer(  # no reference cache: these sample pairs are not the run's
            model=load_policy(path, timed, device), args=args,
            train_dataset=Dataset.from_list(rows), processing_class=tok,
            peft_config=peft_config, callbacks=[timer])
        build_s = time.perf_counter() - started
        say(f"timing {WARMUP + repeats} or more steps ({cfg.per_device_train_batch_size} pairs "
            "each) ...")
        with contextlib.redirect_stdout(sys.stderr):  # the trainer's log lines are not output
            trainer.train()
        steps = timer.seconds[WARMUP:] or timer.seconds
        model = trainer.model
        say("timing an evaluation batch, a sample and a checkpoint ...")
        return Measured(
            step_s=cfg.gradient_accumulation_steps * statistics.median(steps),
            step_low_s=cfg.gradient_accumulation_steps * min(steps),
            step_high_s=cfg.gradient_accumulation_steps * max(steps),
            load_s=start_s + build_s * (2 if _separate_reference(cfg) else 1),
            ref_pair_s=_reference_pair(model, cfg, rows, tok, device),
            eval_batch_s=_eval_batch(model, cfg, rows, tok, device),
            token_s=_token_time(model, tok, device),
            checkpoint_s=_checkpoint_time(model, scratch), repeats=len(steps))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sample(cfg: RunConfig, store, model_path: str, tok, repeats: int) -> list[dict]:
    """A seeded sample of the run's rendered train pairs, enough for the timed steps."""
    ds = get_dataset(store, cfg.dataset)
    fmt = prompt_format_for(cfg, ds.prompt_format, model_path, tok)
    pool = render_pairs(store, ds.id, cfg.train_split, POOL, fmt, tok, cfg)
    if not pool:
        raise ConfigError(f"Dataset '{ds.name}' has no pairs in train_split "
                          f"{cfg.train_split!r} to time a step with.",
                          "Pick a split with pairs.", field="train_split")
    batch = cfg.per_device_train_batch_size
    rng = random.Random(cfg.seed)
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")}
            for r in (rng.choice(pool) for _ in range(batch * (WARMUP + repeats)))]
    if cfg.batch_order == "by_length":  # the run's batches hold pairs of like length
        from .worker import pair_length

        rows.sort(key=lambda r: pair_length(r, tok))
        batches = [rows[i:i + batch] for i in range(0, len(rows), batch)]
        rng.shuffle(batches)
        rows = [r for b in batches for r in b]
    return rows


def _process_start() -> float:
    """Seconds a new job process takes to import what the worker imports."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import trl.trainer.dpo_trainer, peft"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def _separate_reference(cfg: RunConfig) -> bool:
    """A full fine-tune loads a second copy of the model as its reference (TRL does)."""
    return cfg.method == "full" and not cfg.precompute_ref_log_probs


def _forward_logps(model, texts: list[str], tok, device):
    import torch

    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.no_grad():
        logits = model(**enc).logits[:, :-1].float()
        logits.log_softmax(-1).gather(-1, enc["input_ids"][:, 1:, None])
    _sync(device)


def _reference(model, cfg: RunConfig):
    import contextlib

    return model.disable_adapter() if hasattr(model, "disable_adapter") \
        else contextlib.nullcontext()


def _reference_pair(model, cfg: RunConfig, rows: list[dict], tok, device) -> float:
    """One pair's precomputed reference log-probs, in batches as TRL precomputes them."""
    if not cfg.precompute_ref_log_probs:
        return 0.0
    batch = rows[:cfg.per_device_train_batch_size]
    texts = [r["prompt"] + r[side] for r in batch for side in ("chosen", "rejected")]
    t = time.perf_counter()
    with _reference(model, cfg):
        _forward_logps(model, texts, tok, device)
    return (time.perf_counter() - t) / len(batch)


def _eval_batch(model, cfg: RunConfig, rows: list[dict], tok, device) -> float:
    batch = [rows[i % len(rows)] for i in range(cfg.per_device_eval_batch_size)]
    texts = [r["prompt"] + r[side] for r in batch for side in ("chosen", "rejected")]
    model.eval()
    t = time.perf_counter()
    _forward_logps(model, texts, tok, device)
    with _reference(model, cfg):
        _forward_logps(model, texts, tok, device)
    model.train()
    return time.perf_counter() - t


def _token_time(model, tok, device) -> float:
    """Seconds per generated token, greedy, as the run's samples are made."""
    import torch

    enc = tok("Tell me about the weather today.", return_tensors="pt").to(model.device)
    model.eval()
    with torch.no_grad():
        t = time.perf_counter()
        model.generate(**enc, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                       pad_token_id=tok.pad_token_id)
        _sync(device)
    model.train()
    return (time.perf_counter() - t) / 8


def _checkpoint_time(model, scratch: Path) -> float:
    """Writing the trained weights and an optimizer state of twice their size."""
    import torch

    params = [p.detach().cpu() for p in model.parameters() if p.requires_grad]
    t = time.perf_counter()
    torch.save({"weights": params, "optimizer": [[p, p] for p in params]},
               scratch / "checkpoint.pt")
    return time.perf_counter() - t


def _scratch(ws) -> Path:
    folder = ws.cache / "measure"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sync(device) -> None:
    if device.kind == "cuda":
        import torch

        torch.cuda.synchronize()
