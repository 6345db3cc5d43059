"""Background jobs for work that is not training (pair generation, evaluation, sweeps).

A job is a `runs` row (kind = what it does) plus `runs/<id>/` holding `job.json` and `job.log`.
The child is `python -m dpo_core.jobrunner RUN_DIR` in its own process group, started without a
shell and writing to `job.log` (never a pipe to us), so a closed browser or a restarted app
changes nothing for it. The child writes progress and its final status; we only read the store.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .errors import ConfigError, JobError, NotFoundError
from .procs import process_alive, process_start_time
from .store import Store, dumps, now

JOB_FILE = "job.json"
LOG_FILE = "job.log"
ACTIVE = ("queued", "running")
FINAL = ("completed", "failed", "cancelled", "lost")
HEARTBEAT_STALE_S = 120.0  # the runner beats every few seconds from a thread
CANCEL_TIMEOUT_S = 30.0

_children: dict[int, subprocess.Popen] = {}  # runners this process started, reaped on reads


def new_job_id(kind: str) -> str:
    return f"{kind}-" + time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def runs_folder(store: Store) -> Path:
    """runs/ of the workspace that holds this store (the store file sits in the workspace)."""
    return Path(store.path).resolve().parent / "runs"


def start_job(store: Store, kind: str, config: dict, target: str, name: str = "") -> str:
    """Freeze runs/<id>/job.json, insert the row and launch the runner; returns the job id."""
    module, _, func = target.partition(":")
    if not module or not func:
        raise ConfigError(f"Job target '{target}' is not 'package.module:function'.",
                          "Name the function to run, e.g. 'dpo_core.data.generators:run_generate'.")
    job_id = new_job_id(kind)
    run_dir = runs_folder(store) / job_id
    run_dir.mkdir(parents=True)
    job = {"id": job_id, "kind": kind, "name": name or job_id, "target": target,
           "config": config, "store": str(Path(store.path).resolve())}
    (run_dir / JOB_FILE).write_text(json.dumps(job, indent=2, ensure_ascii=False, default=str))
    # Insert and launch inside one write transaction: no scheduler ever sees it queued and idle.
    with store.write() as conn:
        conn.execute("INSERT INTO runs(id, name, kind, status, config_json, run_dir, created, host)"
                     " VALUES(?,?,?,?,?,?,?,?)", (job_id, job["name"], kind, "queued",
                                                  dumps(config), str(run_dir), now(),
                                                  socket.gethostname()))
        try:
            proc = launch_runner(run_dir)
        except OSError as exc:
            raise JobError(f"Could not start the job runner: {exc}.",
                           "Check that the Python environment can run `python -m dpo_core`.") \
                from exc
        conn.execute("UPDATE runs SET status='running', pid=?, pgid=?, proc_start=?, started=?,"
                     " heartbeat=? WHERE id=?",
                     (proc.pid, proc.pid, process_start_time(proc.pid), now(), now(), job_id))
    return job_id


def launch_runner(run_dir: Path) -> subprocess.Popen:
    """`python -m dpo_core.jobrunner RUN_DIR` in a new session, output appended to job.log."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [sys.executable, "-m", "dpo_core.jobrunner", str(run_dir)]
    with open(run_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env=env, cwd=str(run_dir))
    _children[proc.pid] = proc
    return proc


def _reap() -> None:
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            _children.pop(pid, None)


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------
def _job_dict(row) -> dict:
    d = dict(row)
    d["config"] = json.loads(d.pop("config_json") or "{}")
    d["result"] = json.loads(d.pop("result_json") or "{}")
    d["heartbeat_age"] = None if not d["heartbeat"] else max(0.0, now() - d["heartbeat"])
    return d


def find_row(store: Store, job_id: str, noun: str = "job"):
    """The runs row of an id or of a unique id prefix; several matches are an error, never a
    guess (a prefix that picked the newest match once cancelled the wrong run)."""
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


def _row(store: Store, job_id: str):
    return find_row(store, job_id)


def job_status(store: Store, job_id: str, stale_s: float = HEARTBEAT_STALE_S) -> dict:
    """The job row as a dict; a running job whose process is gone or silent becomes 'lost'."""
    _reap()
    row = _row(store, job_id)
    if row["status"] == "running" and _is_lost(row, stale_s):
        with store.write() as conn:
            conn.execute("UPDATE runs SET status='lost', finished=?, error_kind='lost',"
                         " error_text=? WHERE id=? AND status='running'",
                         (now(), "The job's process is gone without a final status.\n"
                          + log_tail(row["run_dir"]), row["id"]))
        row = _row(store, row["id"])
    return _job_dict(row)


def _is_lost(row, stale_s: float) -> bool:
    if row["host"] and row["host"] != socket.gethostname():
        return False  # another machine's process: only its heartbeat can tell
    if not process_alive(row["pid"], row["proc_start"]):
        return True
    return bool(row["heartbeat"]) and now() - row["heartbeat"] > stale_s


def list_jobs(store: Store, kind: str | None = None, include_training: bool = False) -> list[dict]:
    """Jobs newest first (training runs left out unless asked), statuses refreshed."""
    sql, params = "SELECT id FROM runs", []
    if kind:
        sql, params = sql + " WHERE kind=?", [kind]
    elif not include_training:
        sql += " WHERE kind!='train'"
    ids = [r["id"] for r in store.query(sql + " ORDER BY created DESC", tuple(params))]
    return [job_status(store, i) for i in ids]


def log_tail(run_dir: str | Path, lines: int = 30) -> str:
    """The last lines of job.log (for error texts and `jobs show`)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 20000))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------
# Stopping and waiting
# ---------------------------------------------------------------------------------------
def cancel_job(store: Store, job_id: str, timeout: float = CANCEL_TIMEOUT_S,
               wait: bool = True) -> dict:
    """SIGTERM to the job's group (it saves what it finished and exits), SIGKILL after timeout."""
    job = job_status(store, job_id)
    if job["status"] not in ACTIVE:
        return job
    pgid = job["pgid"] or job["pid"]
    if not process_alive(job["pid"], job["proc_start"]):
        return job_status(store, job["id"])
    _signal(pgid, signal.SIGTERM)
    if not wait:
        return job
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process_alive(job["pid"], job["proc_start"]):
        _reap()
        time.sleep(0.1)
    if process_alive(job["pid"], job["proc_start"]):
        _signal(pgid, signal.SIGKILL)
        time.sleep(0.2)
    _reap()
    with store.write() as conn:  # killed before it could write its own final status
        conn.execute("UPDATE runs SET status='cancelled', finished=? WHERE id=? AND "
                     "status IN ('queued', 'running')", (now(), job["id"]))
    return job_status(store, job["id"])


def _signal(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_job(store: Store, job_id: str, poll_s: float = 0.2, timeout: float | None = None) -> dict:
    """Block until the job has a final status (tests and the CLI follow loop)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = job_status(store, job_id)
        if job["status"] in FINAL:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise JobError(f"Job {job_id} is still {job['status']} after {timeout:.0f} s.",
                           f"Follow it with `python -m dpo_core jobs show {job_id}`.")
        time.sleep(poll_s)
