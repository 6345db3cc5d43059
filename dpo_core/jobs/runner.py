"""The process of a background job: `python -m dpo_core.jobs.runner RUN_DIR`.

It reads `job.json`, imports the target function and calls `target(config, ctx)`. The context
reports progress, beats from its own thread, and turns SIGTERM into `ctx.cancelled()`, so a
target stops at its next safe point (between chunks, after a training step) with its finished
work saved; while `ctx.interruptible` is set (long set-up before any work), SIGTERM stops it at
once. The final status (completed, cancelled, failed with its error kind) is written here; a
process that dies before that is found `lost` by `lifecycle.refresh`. Under `accelerate launch`
every rank runs this, and only the main one (RANK 0) writes to the store.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from ..cluster.slurm import CANCEL_FILE
from ..errors import ConfigError, DataError, ModelError
from ..store import Store, dumps, now
from ..workspace import Workspace, get_workspace
from .channel import Channel
from .lifecycle import JOB_FILE, log_tail, schedule
from .rows import finish, get_job, update_job

HEARTBEAT_EVERY_S = 5.0


class Cancelled(Exception):
    """SIGTERM arrived while the target was still setting up (`ctx.interruptible`)."""


class JobContext:
    """What a job target gets besides its config: progress, cancel flag, store, folder."""

    def __init__(self, store: Store | None, run_dir: Path, job_id: str, workspace: Workspace,
                 counters: dict | None = None, channel: Channel | None = None):
        self.store, self.run_dir, self.job_id, self.workspace = store, run_dir, job_id, workspace
        self.channel = channel  # a cluster job reports here and never opens the store
        self.main = int(os.environ.get("RANK", "0")) == 0  # only rank 0 writes to the store
        # Slurm requeued the job (time limit, preemption): it continues from its checkpoint
        self.restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        self.counters: dict = dict(counters or {})
        self.interruptible = False
        self.started = False  # the first progress report (with a total) came
        self._cancel = threading.Event()
        self._last: tuple[int, float] | None = None  # (step, when it was reached)
        self._step_seconds: float | None = None

    def progress(self, done: int, total: int, **counters) -> None:
        """Record done/total and any counters (kept, dropped, message, ...) in the job's row;
        when `done` moves, also when, and how long a step takes (the watchdog reads them)."""
        self.counters.update(counters)
        self.started = self.started or total > 0
        cols = {"step": int(done), "total_steps": int(total), "heartbeat": now(),
                "result_json": dumps(self.counters)}
        if self._last is None or done != self._last[0]:
            t = now()
            if self._last is not None and done > self._last[0]:
                per_step = (t - self._last[1]) / (done - self._last[0])
                self._step_seconds = per_step if self._step_seconds is None \
                    else 0.7 * self._step_seconds + 0.3 * per_step  # steady, yet follows changes
                cols["step_seconds"] = self._step_seconds
            self._last = (int(done), t)
            cols["progressed"] = t
        if self.main:
            self._row(**cols)

    @property
    def sink(self):
        """Where metrics and samples go: the channel of a cluster job, else the store."""
        return self.channel if self.channel is not None else self.store

    def _row(self, **cols) -> None:
        if self.channel is None:
            update_job(self.store, self.job_id, **cols)
        elif "result_json" in cols:
            counters = json.loads(cols.pop("result_json"))
            self.channel.append("progress", counters=counters, **cols)
        else:
            self.channel.append("beat")

    def stopped_for_requeue(self) -> bool:
        """SIGTERM without a cancel from the lab, on Slurm: the time-limit warning or a
        preemption; the batch script requeues the job after the checkpoint."""
        return (self.channel is not None and self.cancelled()
                and bool(os.environ.get("SLURM_JOB_ID"))
                and not (self.run_dir / CANCEL_FILE).exists())

    def cancelled(self) -> bool:
        """True once a cancel was asked for (SIGTERM): stop at the next safe point."""
        return self._cancel.is_set()

    def on_sigterm(self, *_args) -> None:
        print("SIGTERM: stopping at the next safe point.", file=sys.stderr, flush=True)
        self._cancel.set()
        if self.interruptible:
            raise Cancelled()

    def beat(self) -> None:
        self._row(heartbeat=now())


def import_target(target: str):
    module, _, func = target.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Job target '{target}' cannot be imported: {exc}.",
                          "Name an existing function as 'package.module:function'.") from exc


def error_kind(exc: BaseException) -> str:
    """oom | data | config | model | unknown: what kind of fix a failed job needs."""
    text = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, MemoryError) or "out of memory" in text or "outofmemory" in text:
        return "oom"
    if isinstance(exc, DataError) or "pairs.train.jsonl" in text:
        return "data"
    if isinstance(exc, ModelError):
        return "model"
    if isinstance(exc, ConfigError) or (isinstance(exc, (ValueError, TypeError))
                                        and "config" in text):
        return "config"
    return "unknown"  # ("stalled" is given by the watchdog, "lost" by the lab)


def _heartbeats(ctx: JobContext, stop: threading.Event, first_progress_s: float) -> None:
    """Beat every few seconds; fail the job when it never reports progress in time."""
    started = time.monotonic()
    while not stop.wait(HEARTBEAT_EVERY_S):
        if first_progress_s and not ctx.started and time.monotonic() - started > first_progress_s:
            _never_started(ctx, first_progress_s)
        try:
            ctx.beat()
        except Exception as exc:  # a busy store must not kill the job; the next beat retries
            print(f"heartbeat failed: {exc}", file=sys.stderr, flush=True)


def _never_started(ctx: JobContext, waited_s: float) -> None:
    """The job is stuck before its work began (a distributed set-up waiting for processes that
    never come, a download without network, a lock): record it failed with the log tail, then
    end the whole process group, which frees the queue."""
    print(f"watchdog: no progress after {waited_s:.0f} s; failing the job", file=sys.stderr,
          flush=True)
    text = (f"The job made no progress in its first {waited_s / 60:.0f} min and was stopped "
            f"(it hung while setting up).\n\n{log_tail(ctx.run_dir)}")
    _final(ctx, "failed", error_kind="stalled", error_text=text)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def execute(ctx: JobContext, target: str, config: dict, reraise: bool = False,
            first_progress_s: float = 0.0) -> int:
    """Run `target(config, ctx)` to a final status; returns the process exit code.

    `reraise` hands a failure on after recording it (a terminal verb prints it);
    `first_progress_s` (0 = never) fails a job that has reported no progress by then."""
    stop = threading.Event()
    if ctx.main:
        threading.Thread(target=_heartbeats, args=(ctx, stop, first_progress_s),
                         daemon=True).start()
    try:
        result = import_target(target)(config, ctx)
    except (Cancelled, KeyboardInterrupt):
        stop.set()
        if _requeued(ctx):
            return 0
        _final(ctx, "cancelled", result_json=dumps(ctx.counters))
        if reraise:
            raise
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a recorded status
        stop.set()
        traceback.print_exc()
        sys.stderr.flush()
        text = f"{type(exc).__name__}: {exc}\n\n{log_tail(ctx.run_dir)}"
        _final(ctx, "failed", error_kind=error_kind(exc), error_text=text,
               result_json=dumps(ctx.counters))
        if reraise:
            raise
        return 1
    stop.set()
    if _requeued(ctx):
        return 0
    status = "cancelled" if ctx.cancelled() else "completed"
    _final(ctx, status, result_json=dumps({**ctx.counters, **(result or {})}))
    print(f"[{time.strftime('%H:%M:%S')}] job {ctx.job_id} {status}", file=sys.stderr, flush=True)
    return 0


def _requeued(ctx: JobContext) -> bool:
    """Stopped by Slurm's time-limit warning or a preemption: no final status (the batch
    script requeues the job, which resumes from the checkpoint just written)."""
    if not ctx.stopped_for_requeue():
        return False
    if ctx.main:
        ctx.channel.append("requeue")
    print(f"[{time.strftime('%H:%M:%S')}] job {ctx.job_id} stopped for a requeue",
          file=sys.stderr, flush=True)
    return True


def _final(ctx: JobContext, status: str, **cols) -> None:
    """The final status, then the next queued job gets the freed slot."""
    if not ctx.main:
        return
    if ctx.channel is not None:  # the lab reads it, and starts what waited for the slot
        result = json.loads(cols.pop("result_json", "{}"))
        ctx.channel.append("final", status=status, result=result, **cols)
        return
    finish(ctx.store, ctx.job_id, status, **cols)
    schedule(ctx.store)


def run(run_dir: Path) -> int:
    """Run the job in `run_dir` (its process's entry point)."""
    job = json.loads((run_dir / JOB_FILE).read_text())
    if job.get("channel"):  # on a cluster (or asked for): the store is not ours to open
        ctx = JobContext(None, run_dir, job["id"], get_workspace(job["workspace"]),
                         channel=Channel(run_dir))
        if ctx.main:
            ctx.channel.append("started", host=socket.gethostname(), pid=os.getpid(),
                               restarts=ctx.restarts,
                               slurm_job=os.environ.get("SLURM_JOB_ID", ""))
    else:
        store = Store(job["store"])
        counters = get_job(store, job["id"])["result"]  # what the launcher noted (the GPU)
        ctx = JobContext(store, run_dir, job["id"], get_workspace(job["workspace"]), counters)
    signal.signal(signal.SIGTERM, ctx.on_sigterm)
    return execute(ctx, job["target"], job["config"],
                   first_progress_s=float(job.get("first_progress_s") or 0))


def run_here(store: Store, kind: str, config: dict, target: str, name: str = "") -> dict:
    """Run a job in this process, recorded like any other (a terminal verb that Home and
    `jobs list` show while it works); a failure is recorded, then raised."""
    from .lifecycle import workspace_of, write_job_file
    from .processes import process_start_time
    from .rows import get_job, insert_job, new_job_id

    ws = workspace_of(store)
    job_id = new_job_id(kind)
    run_dir = ws.runs / job_id
    run_dir.mkdir(parents=True)
    write_job_file(run_dir, job_id, kind, target, config, store)
    with store.write() as conn:
        insert_job(conn, job_id, kind, name, config, str(run_dir), status="running",
                   pid=os.getpid(), pgid=os.getpgrp(), started=now(), heartbeat=now(),
                   proc_start=process_start_time(os.getpid()))
    ctx = JobContext(store, run_dir, job_id, ws)
    execute(ctx, target, config, reraise=True)
    return get_job(store, job_id)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dpo_core.jobs.runner RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    print(f"[{time.strftime('%H:%M:%S')}] job process pid {os.getpid()} for {run_dir}",
          flush=True)
    return run(run_dir)


if __name__ == "__main__":
    raise SystemExit(main())
