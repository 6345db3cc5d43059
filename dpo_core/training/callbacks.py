"""The trainer callback that reports a run to the store: metrics, progress, samples, checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

from ..jobs.channel import Channel
from ..store import Store
from .checkpoints import RESUME_FILE, last_complete_checkpoint, mark_complete
from .metrics import write_metrics

PROGRESS_EVERY_S = 1.0  # the runs row is updated at most this often (heartbeat + step)


class SimulatedOOM(RuntimeError):
    """Raised by the `debug.oom_at_step` hook; classified like a real CUDA out-of-memory error."""

    def __init__(self, step: int):
        super().__init__(f"CUDA out of memory (simulated at step {step}). Tried to allocate 2.00 GiB")


class LabCallback(TrainerCallback):
    """Writes every logged metric (plus tokens/s), progress, samples and checkpoint markers."""

    def __init__(self, store: Store | Channel, run_id: str, *, progress=None, stop_flag=None, sampler=None,
                 sample_every: int = 0, oom_at_step: int = 0, step_delay: float = 0.0,
                 write: bool = True, metrics: bool = True):
        self.store, self.run_id = store, run_id
        self.report = progress or (lambda step, total: None)  # the job's progress
        self.stop_flag = stop_flag or (lambda: False)
        self.sampler = sampler
        self.sample_every = sample_every
        self.oom_at_step, self.step_delay = oom_at_step, step_delay
        self.write = write  # False on non-main processes
        self.metrics = metrics  # False only when benchmarking the metrics writer off
        self._last_progress = 0.0
        self._last_tokens: tuple[float, float] | None = None
        self.last_logs: dict[str, float] = {}
        self.sampled: set[int] = set()  # steps whose samples are written
        # a resumed run: where its trainer started, and what the stopped part had counted
        self.start_step, self.tokens_before, self.loss_before = 0, 0.0, None

    # -- progress -------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kw):
        self.start_step = state.global_step
        if self.start_step:
            self.tokens_before, self.loss_before = _before(state.log_history, self.start_step)
        if self._main(state):
            self._progress(state.global_step, state.max_steps, force=True)
            if self.sampler and not self.start_step:
                self.sample(0)  # the model before training: what each later sample is read against

    def sample(self, step: int) -> None:
        """Samples at `step`, once."""
        if step not in self.sampled:
            self.sampled.add(step)
            self.sampler(step)

    def on_step_end(self, args, state, control, **kw):
        step = state.global_step
        if self.step_delay:
            time.sleep(self.step_delay)
        if self.oom_at_step and step >= self.oom_at_step:
            raise SimulatedOOM(step)
        if self._main(state):
            self._progress(step, state.max_steps)
            if self.sampler and self.sample_every and step % self.sample_every == 0:
                self.sample(step)
        if self.stop_flag():
            # finish this step, write a checkpoint, then leave the loop
            control.should_save = True
            control.should_training_stop = True
        return control

    def _progress(self, step: int, total: int, force: bool = False) -> None:
        t = time.monotonic()
        if not force and t - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = t
        self.report(step, total)

    # -- metrics --------------------------------------------------------------------------
    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or not self._main(state):
            return
        logs = self._whole_run(dict(logs), state)
        tokens = logs.get("num_tokens")
        t = time.monotonic()
        if isinstance(tokens, (int, float)) and not any(k.startswith("eval_") for k in logs):
            if self._last_tokens and t > self._last_tokens[1]:
                logs["tokens/s"] = (tokens - self._last_tokens[0]) / (t - self._last_tokens[1])
            self._last_tokens = (tokens, t)
        self.last_logs.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
        if self.metrics:
            write_metrics(self.store, self.run_id, state.global_step, logs)

    # -- checkpoints ----------------------------------------------------------------------
    def on_save(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            mark_complete(folder, state.global_step)
            self._progress(state.global_step, state.max_steps, force=True)

    def on_train_end(self, args, state, control, **kw):
        if self._main(state):
            self._progress(state.global_step, state.max_steps, force=True)

    def _main(self, state) -> bool:
        return self.write and state.is_world_process_zero

    def _whole_run(self, logs: dict, state) -> dict:
        """A resumed trainer counts from its checkpoint: TRL's num_tokens restarts at 0 and the
        Trainer's train_loss averages the resumed steps only. Both are made the whole run's."""
        if not self.start_step:
            return logs
        if isinstance(logs.get("num_tokens"), (int, float)):
            logs["num_tokens"] += self.tokens_before
        if isinstance(logs.get("train_loss"), (int, float)) and self.loss_before is not None:
            done = max(1, state.global_step)
            logs["train_loss"] = (self.loss_before * self.start_step
                                  + logs["train_loss"] * (done - self.start_step)) / done
        return logs


def _before(log_history: list[dict], step: int) -> tuple[float, float | None]:
    """What a run had counted up to `step`: its last num_tokens, and its mean train loss (each
    logged loss is the mean since the log before it, so it weighs by the steps it covers)."""
    tokens, total, covered, last = 0.0, 0.0, 0, 0
    for entry in log_history:
        at = entry.get("step", 0)
        if at > step:
            break
        if isinstance(entry.get("num_tokens"), (int, float)):
            tokens = float(entry["num_tokens"])
        if isinstance(entry.get("loss"), (int, float)) and at > last:
            total += entry["loss"] * (at - last)
            covered += at - last
            last = at
    return tokens, (total / covered if covered else None)


def restart_checkpoint(ctx) -> str | None:
    """The checkpoint a job that Slurm requeued (time limit, preemption) continues from: its
    newest complete one. The main process records it (resume.json) and tells the lab, which
    drops what was logged past it, so every step is stored once; None when not requeued."""
    if not getattr(ctx, "restarts", 0):
        return None
    ckpt = last_complete_checkpoint(ctx.run_dir)
    step = int(ckpt.name.split("-")[-1]) if ckpt else 0
    if ctx.main:
        (ctx.run_dir / RESUME_FILE).write_text(json.dumps(
            {"checkpoint": str(ckpt) if ckpt else None, "step": step, "requeued": True}))
        if ctx.channel is not None:
            ctx.channel.append("resume", step=step, checkpoint=ckpt.name if ckpt else "")
    return str(ckpt) if ckpt else None
