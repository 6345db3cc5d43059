"""The `runs` table: one row per job (training run, evaluation, pair build, sweep, model
preparation, imported log). The one place that finds a job by id or unique id prefix."""

from __future__ import annotations

import json
import secrets
import socket
import time

from ..access import require_owner
from ..errors import NotFoundError
from ..store import Store, dumps, now

ACTIVE = ("queued", "running")
FINAL = ("completed", "failed", "cancelled", "lost")
STALL_AFTER_S = 60.0  # a job process beats every few seconds: this much silence is a stall
MIN_PROGRESS_STALL_S = 60.0  # a step that has not moved for less than this is never flagged


def new_job_id(kind: str) -> str:
    """A sortable id: training runs `20261202-103000-ab12`, other kinds `eval-2026...`."""
    stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    return stamp if kind == "train" else f"{kind}-{stamp}"


def insert_job(conn, job_id: str, kind: str, name: str, config: dict, run_dir: str, *,
               status: str = "queued", dataset_id: int | None = None, total_steps: int = 0,
               **extra) -> None:
    """Insert a job's row inside the caller's write transaction."""
    cols = {"id": job_id, "name": name or job_id, "kind": kind, "status": status,
            "config_json": dumps(config), "dataset_id": dataset_id, "run_dir": run_dir,
            "created": now(), "total_steps": total_steps, "host": socket.gethostname(), **extra}
    conn.execute(f"INSERT INTO runs({', '.join(cols)}) VALUES({', '.join('?' * len(cols))})",
                 tuple(cols.values()))


def find_row(store: Store, job_id: str, noun: str = "job"):
    """The row of an id or of a unique id prefix; several matches are an error, never a guess
    (a prefix that picked the newest match once cancelled the wrong run)."""
    listing = f"List {noun}s with `python -m dpo_core {noun}s list`."
    job_id = (job_id or "").strip()
    row = store.query_one("SELECT * FROM runs WHERE id=?", (job_id,)) if job_id else None
    if row is None and job_id:
        pattern = job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = store.query("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' "
                           "ORDER BY created DESC LIMIT 6", (pattern,))
        if len(rows) > 1:
            shown = ", ".join(r["id"] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise NotFoundError(f"'{job_id}' matches several {noun}s: {shown}.",
                                f"Give more of the id. {listing}")
        row = rows[0] if rows else None
    if row is None:
        raise NotFoundError(f"No {noun} '{job_id}' in this workspace.", listing)
    return row


def job_dict(row) -> dict:
    """A row as a dict: config and result parsed, heartbeat age, and a stall warning."""
    d = dict(row)
    d["config"] = json.loads(d.pop("config_json") or "{}")
    d["result"] = json.loads(d.pop("result_json") or "{}")
    d["heartbeat_age"] = None if not d["heartbeat"] else max(0.0, now() - d["heartbeat"])
    d["warning"] = stall_warning(d) or progress_warning(d)
    d["where"] = where(d)
    return d


def where(job: dict) -> str:
    """Where a cluster job stands in Slurm, as ' · Slurm: target T, job N, STATE (reason)'
    ('' for a job on this machine): `runs show` and the Runs page show it."""
    info = (job.get("result") or {}).get("slurm")
    if not info:
        return ""
    reason = info.get("reason")
    said = f" ({reason})" if reason and reason != "None" else ""
    again = f", requeued {n}x" if (n := job["result"].get("requeues")) else ""
    return (f" · Slurm: target {info.get('target')}, job {info.get('job_id')}, "
            f"{info.get('state', '?')}{said}{again}")


def progress_warning(job: dict) -> str:
    """A running job that beats but whose step has not moved for `stall_multiple` times its
    measured step time (its config's watchdog setting): hung in a collective, a lock or I/O."""
    multiple = (job.get("config") or {}).get("stall_multiple")
    seconds, since = job.get("step_seconds"), job.get("progressed")
    if job.get("status") != "running" or not multiple or not seconds or not since:
        return ""
    age = now() - since
    if age < max(multiple * seconds, MIN_PROGRESS_STALL_S):
        return ""
    return (f"Step {job.get('step')} has not moved for {age:.0f} s, though steps took about "
            f"{seconds:.1f} s: the job is alive but stuck (waiting on other processes, a lock or "
            "a disk). Cancel it to free its slot; a training run then resumes from its last "
            "checkpoint.")


def stall_warning(job: dict) -> str:
    """A running job whose process stopped beating: alive (so not lost) but frozen or hung.

    The job process beats from its own thread every few seconds whatever its work does, so a
    silence of STALL_AFTER_S means the whole process stopped (SIGSTOP, swapped out, stuck in a
    driver call holding the interpreter) or, for a job on another host, that host went away.
    """
    age = job.get("heartbeat_age")
    if job.get("status") != "running" or age is None or age < STALL_AFTER_S:
        return ""
    where = "" if job.get("host") in ("", socket.gethostname()) else f" on {job['host']}"
    return (f"No heartbeat from the job's process{where} for {age:.0f} s: it is alive but not "
            "responding (stopped, hung or starved). Cancel it to free its slot; a training run "
            "then resumes from its last checkpoint.")


def get_job(store: Store, job_id: str, noun: str = "job") -> dict:
    """The job as a dict (as stored; `lifecycle.job_status` also checks that it still runs)."""
    return job_dict(find_row(store, job_id, noun))


def list_rows(store: Store, kinds: tuple[str, ...] | None = None, status: str | None = None,
              exclude: tuple[str, ...] = ()) -> list[dict]:
    """Jobs newest first, filtered by kind and status."""
    where, params = [], []
    if kinds:
        where.append(f"kind IN ({','.join('?' * len(kinds))})")
        params += kinds
    if exclude:
        where.append(f"kind NOT IN ({','.join('?' * len(exclude))})")
        params += exclude
    if status:
        where.append("status=?")
        params.append(status)
    sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
    return [job_dict(r) for r in store.query(sql + " ORDER BY created DESC, id DESC",
                                             tuple(params))]


def update_job(store: Store, job_id: str, **cols) -> None:
    """Set columns of one job's row."""
    sets = ", ".join(f"{k}=?" for k in cols)
    with store.write() as conn:
        conn.execute(f"UPDATE runs SET {sets} WHERE id=?", (*cols.values(), job_id))


def finish(store: Store, job_id: str, status: str, *, only_active: bool = True, **cols) -> None:
    """Give an active job its final status (a job that already has one keeps it)."""
    sets = ", ".join(f"{k}=?" for k in ("status", *cols))
    sql = f"UPDATE runs SET {sets}, finished=COALESCE(finished, ?) WHERE id=?"
    if only_active:
        sql += " AND status IN ('queued', 'running')"
    with store.write() as conn:
        conn.execute(sql, (status, *cols.values(), now(), job_id))


def delete_job(store: Store, job_id: str) -> None:
    """Remove a job's row and the offset the lab kept in its channel (its folder is the
    caller's to remove)."""
    require_owner("delete runs and jobs")
    with store.write() as conn:
        conn.execute("DELETE FROM runs WHERE id=?", (job_id,))
        store.delete_setting(offset_key(job_id))  # the same transaction (writes nest)


def offset_key(job_id: str) -> str:
    """The `settings` key of how far the lab has read a job's channel (`channel.py`)."""
    return f"channel.{job_id}"
