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
import sys
import threading
import time
import traceback
from pathlib import Path

from ..errors import ConfigError, DataError, ModelError
from ..store import Store, dumps, now
from ..workspace import Workspace, get_workspace
from .lifecycle import JOB_FILE, log_tail, schedule
from .rows import finish, get_job, update_job

HEARTBEAT_EVERY_S = 5.0


class Cancelled(Exception):
    """SIGTERM arrived while the target was still setting up (`ctx.interruptible`)."""


class JobContext:
    """What a job target gets besides its config: progress, cancel flag, store, folder."""

    def __init__(self, store: Store, run_dir: Path, job_id: str, workspace: Workspace,
                 counters: dict | None = None):
        self.store, self.run_dir, self.job_id, self.workspace = store, run_dir, job_id, workspace
        self.main = int(os.environ.get("RANK", "0")) == 0  # only rank 0 writes to the store
        self.counters: dict = dict(counters or {})
        self.interruptible = False
        self._cancel = threading.Event()

    def progress(self, done: int, total: int, **counters) -> None:
        """Record done/total and any counters (kept, dropped, message, ...) in the job's row."""
        self.counters.update(counters)
        if self.main:
            update_job(self.store, self.job_id, step=int(done), total_steps=int(total),
                       heartbeat=now(), result_json=dumps(self.counters))

    def cancelled(self) -> bool:
        """True once a cancel was asked for (SIGTERM): stop at the next safe point."""
        return self._cancel.is_set()

    def on_sigterm(self, *_args) -> None:
        print("SIGTERM: stopping at the next safe point.", file=sys.stderr, flush=True)
        self._cancel.set()
        if self.interruptible:
            raise Cancelled()

    def beat(self) -> None:
        update_job(self.store, self.job_id, heartbeat=now())


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
    return "unknown"


def _heartbeats(ctx: JobContext, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_EVERY_S):
        try:
            ctx.beat()
        except Exception as exc:  # a busy store must not kill the job; the next beat retries
            print(f"heartbeat failed: {exc}", file=sys.stderr, flush=True)


def execute(ctx: JobContext, target: str, config: dict, reraise: bool = False) -> int:
    """Run `target(config, ctx)` to a final status; returns the process exit code.

    `reraise` hands a failure on after recording it (a terminal verb prints it)."""
    stop = threading.Event()
    if ctx.main:
        threading.Thread(target=_heartbeats, args=(ctx, stop), daemon=True).start()
    try:
        result = import_target(target)(config, ctx)
    except (Cancelled, KeyboardInterrupt):
        stop.set()
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
    status = "cancelled" if ctx.cancelled() else "completed"
    _final(ctx, status, result_json=dumps({**ctx.counters, **(result or {})}))
    print(f"[{time.strftime('%H:%M:%S')}] job {ctx.job_id} {status}", file=sys.stderr, flush=True)
    return 0


def _final(ctx: JobContext, status: str, **cols) -> None:
    """The final status, then the next queued job gets the freed slot."""
    if not ctx.main:
        return
    finish(ctx.store, ctx.job_id, status, **cols)
    schedule(ctx.store)


def run(run_dir: Path) -> int:
    """Run the job in `run_dir` (its process's entry point)."""
    job = json.loads((run_dir / JOB_FILE).read_text())
    store = Store(job["store"])
    counters = get_job(store, job["id"])["result"]  # what the launcher noted (the GPU, say)
    ctx = JobContext(store, run_dir, job["id"], get_workspace(job["workspace"]), counters)
    signal.signal(signal.SIGTERM, ctx.on_sigterm)
    return execute(ctx, job["target"], job["config"])


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
