"""The process of a background job: `python -m dpo_core.jobrunner RUN_DIR`.

It reads `job.json`, imports the target function and calls `target(config, ctx)`. The context
writes progress to the store and turns SIGTERM into `ctx.cancelled()`, so a target stops between
chunks with its finished work saved. The final status (completed, cancelled, failed) is written
here; a process that dies before that is found `lost` by `jobs.job_status`.
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

from .errors import ConfigError, DataError, ModelError
from .jobs import JOB_FILE, log_tail
from .store import Store, dumps, now

HEARTBEAT_EVERY_S = 5.0


class JobContext:
    """What a job target gets besides its config: progress, cancel flag, store and folder."""

    def __init__(self, store: Store, run_dir: Path, job_id: str):
        self.store, self.run_dir, self.job_id = store, run_dir, job_id
        self.counters: dict = {}
        self._cancel = threading.Event()

    def progress(self, done: int, total: int, **counters) -> None:
        """Record done/total and any counters (kept, dropped, ...) in the job's row."""
        self.counters.update(counters)
        with self.store.write() as conn:
            conn.execute("UPDATE runs SET step=?, total_steps=?, heartbeat=?, result_json=? "
                         "WHERE id=?", (int(done), int(total), now(), dumps(self.counters),
                                        self.job_id))

    def cancelled(self) -> bool:
        """True once a cancel was asked for (SIGTERM): stop at the next safe point."""
        return self._cancel.is_set()

    def cancel(self, *_args) -> None:
        self._cancel.set()

    def beat(self) -> None:
        with self.store.write() as conn:
            conn.execute("UPDATE runs SET heartbeat=? WHERE id=?", (now(), self.job_id))


def import_target(target: str):
    module, _, func = target.partition(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"Job target '{target}' cannot be imported: {exc}.",
                          "Name an existing function as 'package.module:function'.") from exc


def error_kind(exc: BaseException) -> str:
    """oom | data | config | model | unknown (the training worker's vocabulary)."""
    text = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, MemoryError) or "out of memory" in text:
        return "oom"
    for cls, kind in ((DataError, "data"), (ModelError, "model"), (ConfigError, "config")):
        if isinstance(exc, cls):
            return kind
    return "unknown"


def _heartbeats(ctx: JobContext, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_EVERY_S):
        try:
            ctx.beat()
        except Exception as exc:  # a busy store must not kill the job; the next beat retries
            print(f"heartbeat failed: {exc}", file=sys.stderr, flush=True)


def _finish(ctx: JobContext, status: str, **fields) -> None:
    sets = ", ".join(f"{k}=?" for k in ("status", "finished", *fields))
    with ctx.store.write() as conn:
        conn.execute(f"UPDATE runs SET {sets} WHERE id=?",
                     (status, now(), *fields.values(), ctx.job_id))


def run(run_dir: Path) -> int:
    """Run the job in `run_dir` to a final status; returns the process exit code."""
    job = json.loads((run_dir / JOB_FILE).read_text())
    store = Store(job["store"])
    ctx = JobContext(store, run_dir, job["id"])
    signal.signal(signal.SIGTERM, ctx.cancel)
    stop = threading.Event()
    threading.Thread(target=_heartbeats, args=(ctx, stop), daemon=True).start()
    try:
        result = import_target(job["target"])(job["config"], ctx)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a recorded status
        stop.set()
        traceback.print_exc()
        sys.stderr.flush()
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        text = f"{type(exc).__name__}: {exc}\n{log_tail(run_dir)}"
        _finish(ctx, status, error_kind=error_kind(exc), error_text=text,
                result_json=dumps(ctx.counters))
        return 1
    stop.set()
    counters = {**ctx.counters, **(result or {})}
    _finish(ctx, "cancelled" if ctx.cancelled() else "completed", result_json=dumps(counters))
    print(f"[{time.strftime('%H:%M:%S')}] job {job['id']} finished", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dpo_core.jobrunner RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    print(f"[{time.strftime('%H:%M:%S')}] job runner pid {os.getpid()} for {run_dir}", flush=True)
    return run(run_dir)


if __name__ == "__main__":
    raise SystemExit(main())
