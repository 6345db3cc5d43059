"""The channel: how a job on another host reports without the lab's database.

SQLite over a network filesystem is unsafe, so a job run on a cluster never opens the store. Its
process appends one JSON line per event to `channel.jsonl` in its run folder (progress,
heartbeats, metrics, samples, a resume, the final status), each line with a single `write` on a
file opened O_APPEND, so a reader sees whole lines or nothing of a line. The lab reads the lines
after the offset it has ingested (kept in the store's `settings`, under `channel.<job id>`) and
applies them with that offset in one transaction: reading twice never stores a value twice, and a
lab that was off catches up from the file when it starts again.

Job-level events (progress, beat, final, requeue) are applied here; the others (a training
run's metrics, samples, resume) by the job's `sink`, a function named in job.json as
`module:function` and imported by name, as the runner imports its target.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from ..store import Store, dumps, now
from .rows import find_row, offset_key

CHANNEL_FILE = "channel.jsonl"
JOB_EVENTS = ("progress", "beat", "final", "requeue", "started", "resume")  # resume: both


class Channel:
    """The writing end, in the job process: append events to RUN_DIR/channel.jsonl."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / CHANNEL_FILE
        self._repair()

    def _repair(self) -> None:
        """A process killed in the middle of a line left it without its newline: end it, so the
        next line stays whole (the reader skips the broken one)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        except OSError:  # absent or empty
            return
        if torn:
            self._write(b"\n")

    def _write(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)  # one write of a whole line: never interleaved with another
        finally:
            os.close(fd)

    def append(self, event: str, **fields) -> None:
        """One event as one line: {"e": event, "at": time, ...fields}."""
        line = json.dumps({"e": event, "at": now(), **fields}, ensure_ascii=False,
                          default=str, allow_nan=False)
        self._write(line.encode("utf-8") + b"\n")


def read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    """The whole lines after byte `offset` as events, and the offset after the last of them
    (a line still being written is left for the next read); a broken line is skipped."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for raw in data[:end].split(b"\n"):
        try:
            event = json.loads(raw)
        except ValueError:
            continue  # a torn line (its writer was killed mid-write): nothing to apply
        if isinstance(event, dict) and "e" in event:
            events.append(event)
    return events, offset + end + 1


def ingest(store: Store, job_id: str, run_dir: str | Path, sink: str = "") -> int:
    """Apply the channel's new events to the store; returns how many were applied.

    Events and the new offset are written in one transaction, so a crash in between applies
    nothing and the next call starts from the same line."""
    path = Path(run_dir) / CHANNEL_FILE
    offset = int(store.get_setting(offset_key(job_id), "0") or 0)
    try:
        if path.stat().st_size <= offset:
            return 0
    except OSError:
        return 0
    events, new_offset = read_events(path, offset)
    if new_offset == offset:
        return 0
    apply_other = _import(sink) if sink else None
    with store.write():
        for event in events:
            if event["e"] in JOB_EVENTS:
                _apply_job_event(store, job_id, event)
            if event["e"] not in JOB_EVENTS[:-1] and apply_other is not None:
                apply_other(store, job_id, event)
        store.set_setting(offset_key(job_id), str(new_offset))
    return len(events)


def _import(target: str):
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _apply_job_event(store: Store, job_id: str, event: dict) -> None:
    """progress/beat/started: the row's progress and heartbeat (a queued row that reports is
    running); final: its final status; requeue: counted (the scheduler's state follows)."""
    row = find_row(store, job_id)
    result = json.loads(row["result_json"] or "{}")
    kind = event["e"]
    if kind == "final":
        _finish(store, row, event, result)
        return
    if row["status"] not in ("queued", "running"):
        return  # a late line of a job that already has its final status
    cols: dict = {"heartbeat": event["at"]}
    if kind == "progress":
        cols.update({k: event[k] for k in ("step", "total_steps", "progressed", "step_seconds")
                     if event.get(k) is not None})
        cols["result_json"] = dumps({**result, **(event.get("counters") or {})})
    elif kind == "requeue":
        cols["result_json"] = dumps({**result, "requeues": int(result.get("requeues", 0)) + 1})
    elif kind == "resume":
        cols.update(resumed_from=event.get("checkpoint") or "", step=int(event.get("step") or 0))
    if kind in ("progress", "beat", "started", "resume") and row["status"] == "queued":
        cols.update(status="running", started=row["started"] or event["at"])
    sets = ", ".join(f"{k}=?" for k in cols)
    with store.write() as conn:
        conn.execute(f"UPDATE runs SET {sets} WHERE id=?", (*cols.values(), job_id))


def _finish(store: Store, row, event: dict, result: dict) -> None:
    if row["status"] not in ("queued", "running"):
        return
    status = event.get("status") or "failed"
    cols = {"status": status, "error_kind": event.get("error_kind") or "",
            "error_text": event.get("error_text") or "",
            "result_json": dumps({**result, **(event.get("result") or {})}),
            "finished": event["at"]}
    sets = ", ".join(f"{k}=?" for k in cols)
    with store.write() as conn:
        conn.execute(f"UPDATE runs SET {sets} WHERE id=?", (*cols.values(), row["id"]))
