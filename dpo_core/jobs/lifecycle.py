"""One lifecycle for every background job: start, the device queue, liveness, cancel, wait.

A job is a `runs` row plus a folder `runs/<id>/` holding `job.json` (what to run) and
`worker.log`. Its process is `python -m dpo_core.jobs.runner RUN_DIR` (or that under
`accelerate launch` for several processes) in its own process group, started without a shell and
never piped to us, so a closed browser or a restarted app changes nothing for it.

States: queued -> running -> completed | failed | cancelled, or `lost` when the process is gone
without a final status (pid + process start time, so a recycled pid is not taken for the job).
A running job whose heartbeat stopped while its process lives is `stalled`: it stays running
with a warning (rows.stall_warning). Jobs of QUEUED_KINDS wait for a device slot (one on CPU,
`training.jobs_per_gpu` per GPU); the others start at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from ..access import require_owner
from ..errors import ConfigError, DPOLabError, JobError
from ..store import Store, dumps, now
from ..workspace import Workspace, get_workspace
from . import processes, slurm_jobs
from .channel import ingest
from .processes import LEGACY_LOG_FILE, LOG_FILE, log_tail  # noqa: F401 (re-exported)
from .rows import (
    ACTIVE,
    FINAL,
    find_row,
    finish,
    insert_job,
    job_dict,
    list_rows,
    new_job_id,
    update_job,
)

JOB_FILE = "job.json"
CANCEL_TIMEOUT_S = 60.0  # SIGTERM, then this long to write a checkpoint, then SIGKILL
SETUP_CANCEL_S = 10.0  # ... for a job that has not started its work (nothing to save yet)
QUEUED_KINDS = ("train",)  # kinds that hold a device slot while they run
LOCAL = "local"  # the target that is this machine; others are cluster targets (cluster/)
# In `kind IN ({LOCAL_KINDS})`: the queued kinds, of jobs whose process is ours (a cluster job
# waits in its cluster's queue, not for this machine's device slots).
LOCAL_KINDS = ",".join(f"'{k}'" for k in QUEUED_KINDS) + ") AND (host NOT LIKE 'slurm:%'"
REPO_ROOT = str(Path(__file__).resolve().parents[2])


def workspace_of(store: Store) -> Workspace:
    """The workspace that holds this store (the store file sits in the workspace folder)."""
    return get_workspace(Path(store.path).resolve().parent)


# ---------------------------------------------------------------------------------------
# Starting
# ---------------------------------------------------------------------------------------
def write_job_file(run_dir: Path, job_id: str, kind: str, target: str, config: dict,
                   store: Store, processes_: int = 1, accelerate_config: str = "",
                   first_progress_s: float = 0.0, channel: bool = False, sink: str = "",
                   where: str = LOCAL, total_steps: int = 0) -> None:
    """Freeze what the job process runs: target, config, store, how many processes, how long
    it may go without any progress before its watchdog fails it (0 = no limit), and whether it
    reports through the channel (`sink` applies its own events) instead of the store."""
    module, _, func = target.partition(":")
    if not module or not func:
        raise ConfigError(f"Job target '{target}' is not 'package.module:function'.",
                          "Name the function to run, e.g. 'dpo_core.builders.job:run_build'.")
    job = {"id": job_id, "kind": kind, "target": target, "config": config,
           "store": str(Path(store.path).resolve()), "workspace": str(workspace_of(store).home),
           "processes": int(processes_), "accelerate_config": accelerate_config,
           "first_progress_s": float(first_progress_s), "channel": bool(channel),
           "sink": sink, "where": where, "total_steps": int(total_steps)}
    (run_dir / JOB_FILE).write_text(json.dumps(job, indent=2, ensure_ascii=False, default=str))


def start_job(store: Store, kind: str, config: dict, target: str, name: str = "", *,
              job_id: str | None = None, run_dir: Path | None = None,
              dataset_id: int | None = None, total_steps: int = 0, processes_: int = 1,
              accelerate_config: str = "", first_progress_s: float = 0.0,
              launch: bool = True, result: dict | None = None, where: str = LOCAL,
              sink: str = "", channel: bool = False) -> str:
    """Write runs/<id>/job.json, insert the row and launch (or queue) it; returns the job id.

    Callers that prepare the folder first (training freezes its pairs) pass `job_id`/`run_dir`;
    `launch=False` leaves a queued job for the next `schedule`; `result` starts the row's result
    (a run's estimate, kept beside what the job adds). `where` names a cluster target (the job
    is submitted there at once, reporting through the channel; a refusal leaves no row);
    `channel` makes a local job report through it too; `sink` applies its data events.
    """
    require_owner("start runs and jobs")
    extra = {"result_json": dumps(result)} if result else {}
    owned_dir = run_dir is None or not run_dir.exists() or run_dir.name == job_id
    job_id = job_id or new_job_id(kind)
    run_dir = run_dir or workspace_of(store).runs / job_id
    try:
        cluster = slurm_jobs.prepare(store, where, run_dir) if where and where != LOCAL \
            else None
    except DPOLabError:
        if owned_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    run_dir.mkdir(parents=True, exist_ok=True)
    write_job_file(run_dir, job_id, kind, target, config, store, processes_, accelerate_config,
                   first_progress_s, channel or cluster is not None, sink, where or LOCAL,
                   total_steps)
    if cluster is not None:
        slurm_jobs.start(store, job_id, kind, name, config, run_dir, cluster,
                         owned_dir=owned_dir, dataset_id=dataset_id, total_steps=total_steps,
                         result_json=extra.get("result_json", "{}"))
        return job_id
    if channel:
        extra["result_json"] = dumps({**(result or {}), "channel": True})
    if kind in QUEUED_KINDS:
        with store.write() as conn:
            insert_job(conn, job_id, kind, name, config, str(run_dir), dataset_id=dataset_id,
                       total_steps=total_steps, **extra)
        if launch:
            schedule(store)
        return job_id
    # Insert and launch in one transaction: nobody ever sees it queued with no process.
    with store.write() as conn:
        insert_job(conn, job_id, kind, name, config, str(run_dir), dataset_id=dataset_id,
                   total_steps=total_steps, **extra)
        _launch(conn, job_id, run_dir)
    return job_id


def job_command(run_dir: Path) -> list[str]:
    """The job process: plain python, or `accelerate launch` for several processes."""
    job = json.loads((run_dir / JOB_FILE).read_text())
    runner = ["-m", "dpo_core.jobs.runner", str(run_dir)]
    if int(job.get("processes") or 1) <= 1 and not job.get("accelerate_config"):
        return [sys.executable, *runner]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes",
           str(job.get("processes") or 1), "--num_machines", "1", "--main_process_port",
           str(_free_port())]
    if job.get("accelerate_config"):
        cmd += ["--config_file", str(Path(job["accelerate_config"]).expanduser())]
    else:
        cmd += ["--multi_gpu"]  # torchrun-style DDP; on CPU the processes use gloo
    return cmd + runner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Set by a distributed launcher (torchrun, accelerate launch) for the processes it starts; a job
# launched from one of those (a finishing worker starts the next queued job) must not inherit
# them, or it waits for a rendezvous that never comes.
DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                   "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE",
                   "MASTER_ADDR", "MASTER_PORT")
DISTRIBUTED_PREFIXES = ("TORCHELASTIC_", "TORCH_ELASTIC_")
LAUNCHER_PREFIXES = ("ACCELERATE_",)  # ... and what accelerate sets for its processes
LAUNCHER_SET = ("OMP_NUM_THREADS",)  # torchrun sets 1 per process when it starts several


def clean_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` without what a distributed launcher set: every job starts as if from the lab."""
    launched = any(k in env for k in ("RANK", "LOCAL_RANK")) or \
        any(k.startswith(DISTRIBUTED_PREFIXES) for k in env)
    drop = DISTRIBUTED_PREFIXES + (LAUNCHER_PREFIXES if launched else ())
    return {k: v for k, v in env.items() if k not in DISTRIBUTED_ENV and not k.startswith(drop)
            and not (launched and k in LAUNCHER_SET)}


def _environment(gpu: int | None, several: bool) -> dict[str, str]:
    env = clean_environment(dict(os.environ))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if gpu is not None and not several:  # several processes: accelerate places them
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return env


def _launch(conn, job_id: str, run_dir: Path, gpu: int | None = None) -> None:
    """Start the job's process and mark it running (inside the caller's write transaction)."""
    cmd = job_command(run_dir)
    try:
        proc = processes.launch(cmd, run_dir / LOG_FILE, _environment(gpu, len(cmd) > 4),
                                run_dir)
    except OSError as exc:
        conn.execute("UPDATE runs SET status='failed', error_kind='unknown', error_text=?, "
                     "finished=? WHERE id=?", (f"Could not start the job's process: {exc}",
                                               now(), job_id))
        return
    result = json.loads(conn.execute("SELECT result_json FROM runs WHERE id=?",
                                     (job_id,)).fetchone()[0] or "{}")
    conn.execute("UPDATE runs SET status='running', pid=?, pgid=?, proc_start=?, host=?, "
                 "heartbeat=?, started=COALESCE(started, ?), result_json=? WHERE id=?",
                 (proc.pid, proc.pid, processes.process_start_time(proc.pid),
                  socket.gethostname(), now(), now(),
                  dumps({**result, "gpu": gpu} if gpu is not None else result), job_id))


# ---------------------------------------------------------------------------------------
# The device queue
# ---------------------------------------------------------------------------------------
_DEVICE = None


def _device():
    from ..device import detect_device

    global _DEVICE
    if _DEVICE is None:
        _DEVICE = detect_device()
    return _DEVICE


def slots(store: Store) -> int:
    """Queued jobs allowed to run at once: 1 on CPU; per GPU the `training.jobs_per_gpu`
    setting."""
    dev = _device()
    if dev.kind != "cuda":
        return 1
    return max(1, int(store.get_setting("training.jobs_per_gpu", "1"))) * dev.count


def schedule(store: Store) -> list[str]:
    """Mark dead jobs lost and launch queued jobs while slots are free; returns launched ids."""
    refresh(store)
    kinds = LOCAL_KINDS
    if not store.scalar(f"SELECT COUNT(*) FROM runs WHERE status='queued' AND kind IN ({kinds})"):
        return []  # nothing waits: no need to look at the device (that imports torch)
    limit = slots(store)
    launched = []
    while True:
        with store.write() as conn:
            running = conn.execute(f"SELECT COUNT(*) FROM runs WHERE status='running' "
                                   f"AND kind IN ({kinds})").fetchone()[0]
            if running >= limit:
                break
            row = conn.execute(f"SELECT id, run_dir FROM runs WHERE status='queued' AND kind IN "
                               f"({kinds}) ORDER BY created, id LIMIT 1").fetchone()
            if row is None:
                break
            _launch(conn, row["id"], Path(row["run_dir"]), _free_gpu(conn, kinds))
            launched.append(row["id"])
    return launched


def _free_gpu(conn, kinds: str) -> int | None:
    dev = _device()
    if dev.kind != "cuda":
        return None
    busy: dict[int, int] = {}
    for r in conn.execute(f"SELECT result_json FROM runs WHERE status='running' "
                          f"AND kind IN ({kinds})"):
        g = json.loads(r["result_json"] or "{}").get("gpu")
        if g is not None:
            busy[g] = busy.get(g, 0) + 1
    return min(range(dev.count), key=lambda g: busy.get(g, 0))


# ---------------------------------------------------------------------------------------
# Liveness and reading
# ---------------------------------------------------------------------------------------
def refresh(store: Store, job_id: str | None = None) -> None:
    """Cluster jobs follow their channel and Slurm; running jobs on this host whose process is
    gone (or recycled) become 'lost' (after what they wrote to a channel is read)."""
    slurm_jobs.refresh(store, job_id)
    host = socket.gethostname()
    sql = ("SELECT id, pid, proc_start, host, run_dir, cancel_requested, result_json FROM runs "
           "WHERE status='running'")
    rows = store.query(sql + " AND id=?", (job_id,)) if job_id else store.query(sql)
    for row in rows:
        if row["host"] and row["host"] != host:
            continue  # another machine's process: only its heartbeat can tell (a warning)
        alive = processes.process_alive(row["pid"], row["proc_start"])
        if json.loads(row["result_json"] or "{}").get("channel"):
            ingest(store, row["id"], row["run_dir"], _sink_of(row["run_dir"]))  # after `alive`
        if alive:
            continue
        if row["cancel_requested"]:  # killed while being cancelled: that is what was asked
            finish(store, row["id"], "cancelled")
            continue
        finish(store, row["id"], "lost", error_kind="lost",
               error_text="The job's process is gone without a final status.\n"
                          + log_tail(row["run_dir"]))


def _sink_of(run_dir: str) -> str:
    try:
        return json.loads((Path(run_dir) / JOB_FILE).read_text()).get("sink") or ""
    except (OSError, ValueError):
        return ""


def job_status(store: Store, job_id: str, noun: str = "job") -> dict:
    """The job as a dict, after checking that a running one still has its process; a queued
    one says where it stands in the queue (`queue`)."""
    row = find_row(store, job_id, noun)
    if row["status"] == "running" or row["status"] == "queued" and slurm_jobs.is_slurm(row):
        refresh(store, row["id"])
        row = find_row(store, row["id"], noun)
    return with_queue(store, [job_dict(row)])[0]


def with_queue(store: Store, jobs: list[dict]) -> list[dict]:
    """Add `queue` to each queued job: its place in line (1 = next), the queued jobs ahead of
    it and the running ones holding the device slots it waits for."""
    if not any(j["status"] == "queued" for j in jobs):
        return jobs
    kinds = LOCAL_KINDS
    line = [r["id"] for r in store.query(f"SELECT id FROM runs WHERE status='queued' AND kind IN "
                                         f"({kinds}) ORDER BY created, id")]
    running = [r["id"] for r in store.query(f"SELECT id FROM runs WHERE status='running' AND "
                                            f"kind IN ({kinds}) ORDER BY started, id")]
    for job in jobs:
        if job["id"] in line:
            place = line.index(job["id"])
            job["queue"] = {"position": place + 1, "ahead": line[:place], "running": running}
    return jobs


def list_jobs(store: Store, kind: str | None = None, include_training: bool = False) -> list[dict]:
    """Jobs newest first (training runs and imported logs left out unless asked), checked."""
    refresh(store)
    if kind:
        return with_queue(store, list_rows(store, kinds=(kind,)))
    return with_queue(store, list_rows(store, exclude=() if include_training
                                       else ("train", "external")))


def active_jobs(store: Store) -> list[dict]:
    """Queued and running jobs of every kind, oldest first (the sidebar's list)."""
    return sorted((j for s in ACTIVE for j in list_rows(store, status=s)),
                  key=lambda j: j["created"])


# ---------------------------------------------------------------------------------------
# Stopping and waiting
# ---------------------------------------------------------------------------------------
def cancel_job(store: Store, job_id: str, timeout: float = CANCEL_TIMEOUT_S,
               wait: bool = True, noun: str = "job") -> dict:
    """Stop a job: a queued one at once; a running one gets SIGTERM (it finishes its step or
    chunk, saves, and exits cancelled), then SIGKILL after `timeout`. A finished job is
    returned as it is."""
    require_owner("cancel runs and jobs")
    job = job_status(store, job_id, noun)
    if slurm_jobs.is_slurm(job) and job["status"] in ACTIVE:
        slurm_jobs.cancel(store, find_row(store, job["id"]), timeout, wait)
        return job_status(store, job["id"], noun)
    if job["status"] == "queued":
        finish(store, job["id"], "cancelled")
        return job_status(store, job["id"], noun)
    if job["status"] != "running":
        return job
    update_job(store, job["id"], cancel_requested=now())
    processes.signal_group(job["pgid"], signal.SIGTERM)
    if not wait:
        return job
    if not job["progressed"]:  # still setting up (maybe hung there): no checkpoint to wait for
        timeout = min(timeout, SETUP_CANCEL_S)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and processes.process_alive(job["pid"], job["proc_start"]):
        time.sleep(0.1)
    if processes.process_alive(job["pid"], job["proc_start"]):
        processes.signal_group(job["pgid"], signal.SIGKILL)
    processes.wait_group_gone(job["pgid"])
    if job["result"].get("channel"):  # what it wrote before it ended, its own status first
        ingest(store, job["id"], job["run_dir"], _sink_of(job["run_dir"]))
    finish(store, job["id"], "cancelled")  # killed before it could write its own status
    schedule(store)
    return job_status(store, job["id"], noun)


def wait_job(store: Store, job_id: str, poll_s: float = 0.2, timeout: float | None = None,
             on_tick=None, noun: str = "job") -> dict:
    """Block until the job has a final status, launching queued jobs meanwhile."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        schedule(store)
        job = job_status(store, job_id, noun)
        if on_tick:
            on_tick(job)
        if job["status"] in FINAL:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise JobError(f"Job {job_id} is still {job['status']} after {timeout:.0f} s.",
                           f"Follow it with `python -m dpo_core jobs show {job_id}`.")
        time.sleep(poll_s)
