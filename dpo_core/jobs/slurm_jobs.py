"""Jobs on a Slurm target: submitted with sbatch, their state read from Slurm and from the run
folder's channel, cancelled with a checkpoint, resubmitted on resume.

A Slurm job's row has `host` = `slurm:<target>` and `result.slurm` = {job_id, target, state,
reason, exit_code}. Its process never opens the store: it writes the channel
(`jobs/channel.py`), which `refresh` ingests before asking Slurm, so the row's final status is the
worker's own when it wrote one, else Slurm's (with its reason and the log tail).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ..cluster import slurm
from ..cluster.targets import SlurmTarget, check_visible, get_target
from ..errors import DPOLabError
from ..store import Store, dumps, now
from .channel import ingest
from .processes import log_tail
from .rows import find_row, finish, insert_job

HOST_PREFIX = "slurm:"
SUBMIT_CLAIM_S = 60.0  # a resubmission in progress elsewhere (sbatch answers within 30 s)
ENDED_GRACE_S = 5.0  # a job Slurm says ended may still have lines on their way (shared disks)
_ended_seen: dict[str, float] = {}


def is_slurm(row) -> bool:
    return str(row["host"] or "").startswith(HOST_PREFIX)


def prepare(store: Store, target_name: str, run_dir: Path) -> SlurmTarget:
    """The target, after checking the run folder is where the cluster can see it."""
    target = get_target(store, target_name)
    check_visible(target, run_dir)
    return target


def start(store: Store, job_id: str, kind: str, name: str, config: dict, run_dir: Path,
          target: SlurmTarget, *, owned_dir: bool, **row) -> None:
    """Insert the row queued and claimed for submission, submit, then write Slurm's job id. A
    refused submission leaves no row (and no folder, when the folder was made for this job); a
    lab that dies between the two finds the submitted job again (`resubmit`)."""
    result = {**json.loads(row.pop("result_json", "{}") or "{}"), "channel": True,
              "slurm": {"submitting": now(), "target": target.name}}
    with store.write() as conn:
        insert_job(conn, job_id, kind, name, config, str(run_dir), host=HOST_PREFIX + target.name,
                   result_json=dumps(result), **row)
    try:
        slurm_id = slurm.submit(target, job_id, run_dir, slurm.clean_env(dict(os.environ)))
    except DPOLabError:
        with store.write() as conn:
            conn.execute("DELETE FROM runs WHERE id=?", (job_id,))
        if owned_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    _write_submitted(store, job_id, slurm_id, target)
    refresh(store, job_id)  # Slurm's first word on it (Priority, Resources, or running)


def _write_submitted(store: Store, job_id: str, slurm_id: str, target: SlurmTarget) -> None:
    with store.write() as conn:
        row = conn.execute("SELECT result_json FROM runs WHERE id=?", (job_id,)).fetchone()
        result = json.loads(row["result_json"] or "{}") if row else {}
        conn.execute("UPDATE runs SET result_json=? WHERE id=?",
                     (dumps({**result, "slurm": _submitted(slurm_id, target)}), job_id))


def _submitted(slurm_id: str, target: SlurmTarget) -> dict:
    return {"job_id": slurm_id, "target": target.name, "state": "PENDING", "reason": "",
            "exit_code": "", "submitted": now()}


def resubmit(store: Store, row) -> None:
    """A resumed (queued again) row: a new Slurm job for it; a refusal fails the row with
    Slurm's words."""
    with store.write() as conn:  # claim it: two lab processes never both submit it
        row = conn.execute("SELECT * FROM runs WHERE id=?", (row["id"],)).fetchone()
        if row is None or not needs_submission(row):
            return
        result = json.loads(row["result_json"] or "{}")
        stale = (result.get("slurm") or {}).get("submitting")
        claim = {"submitting": now(), "target": row["host"].removeprefix(HOST_PREFIX)}
        conn.execute("UPDATE runs SET result_json=? WHERE id=?",
                     (dumps({**result, "slurm": claim}), row["id"]))
    run_dir = Path(row["run_dir"])
    (run_dir / slurm.CANCEL_FILE).unlink(missing_ok=True)
    try:
        target = prepare(store, row["host"].removeprefix(HOST_PREFIX), run_dir)
        # a claim that never got its id: the lab died after sbatch, so the job may exist
        slurm_id = (slurm.find_job(row["id"], stale) if stale else None) or \
            slurm.submit(target, row["id"], run_dir, slurm.clean_env(dict(os.environ)))
    except DPOLabError as exc:
        finish(store, row["id"], "failed", error_kind="config", error_text=str(exc),
               result_json=dumps({**result, "slurm": {**claim, "ended": now()}}))
        return
    with store.write() as conn:
        conn.execute("UPDATE runs SET result_json=? WHERE id=?",
                     (dumps({**result, "slurm": _submitted(slurm_id, target)}), row["id"]))


def needs_submission(row) -> bool:
    """A queued row whose Slurm job has ended (a resume) or was never submitted."""
    info = json.loads(row["result_json"] or "{}").get("slurm") or {}
    if info.get("submitting") and now() - info["submitting"] < SUBMIT_CLAIM_S:
        return False  # another lab process is submitting it
    return row["status"] == "queued" and (not info.get("job_id") or bool(info.get("ended")))


def refresh(store: Store, job_id: str | None = None, sink: str = "") -> None:
    """Ingest the channel of every active Slurm job (or one), then follow Slurm's state."""
    sql = "SELECT * FROM runs WHERE status IN ('queued', 'running') AND host LIKE 'slurm:%'"
    rows = store.query(sql + " AND id=?", (job_id,)) if job_id else store.query(sql)
    for row in rows:
        if needs_submission(row):
            resubmit(store, row)
            continue
        ingest(store, row["id"], row["run_dir"], sink or _sink(row["run_dir"]))
        _follow(store, find_row(store, row["id"]))
        _mark_ended(store, row["id"])


def _mark_ended(store: Store, job_id: str) -> None:
    """A row that got its final status: its Slurm job is over (a resume submits a new one)."""
    row = find_row(store, job_id)
    result = json.loads(row["result_json"] or "{}")
    if row["status"] in ("queued", "running") or (result.get("slurm") or {}).get("ended"):
        return
    result.setdefault("slurm", {})["ended"] = now()
    with store.write() as conn:
        conn.execute("UPDATE runs SET result_json=? WHERE id=?", (dumps(result), job_id))


def _sink(run_dir: str) -> str:
    try:
        return json.loads((Path(run_dir) / "job.json").read_text()).get("sink") or ""
    except (OSError, ValueError):
        return ""


def _follow(store: Store, row) -> None:
    """The row's status from Slurm's state (unless the worker's final line settled it)."""
    if row["status"] not in ("queued", "running"):
        return
    result = json.loads(row["result_json"] or "{}")
    info = result.get("slurm") or {}
    if not info.get("job_id"):
        return  # being submitted by another lab process
    state = slurm.job_state(info["job_id"])
    if state is None:
        state = {"state": "UNKNOWN", "reason": "Slurm no longer knows the job", "exit_code": ""}
    info.update(state)
    cols: dict = {}
    if state["state"] in slurm.PENDING:
        cols["status"] = "queued"
    elif state["state"] in slurm.RUNNING:
        cols.update(status="running", started=row["started"] or now())
    else:
        _ended(store, row, info)
        return
    cols["result_json"] = dumps({**result, "slurm": info})
    sets = ", ".join(f"{k}=?" for k in cols)
    with store.write() as conn:
        conn.execute(f"UPDATE runs SET {sets} WHERE id=? AND status IN ('queued','running')",
                     (*cols.values(), row["id"]))


def _ended(store: Store, row, info: dict) -> None:
    """Slurm says the job is over and the worker wrote no final line (after a short grace for
    lines still on their way): cancelled if the lab asked, else failed or lost with Slurm's
    reason and the log tail."""
    key = f"{row['id']}:{info.get('job_id')}"
    first = _ended_seen.setdefault(key, time.monotonic())
    if time.monotonic() - first < ENDED_GRACE_S:
        return
    _ended_seen.pop(key, None)
    result = json.loads(row["result_json"] or "{}")
    info["ended"] = now()
    result["slurm"] = info
    if row["cancel_requested"]:
        finish(store, row["id"], "cancelled", result_json=dumps(result))
        return
    status, kind, why = explain(info)
    finish(store, row["id"], status, error_kind=kind, result_json=dumps(result),
           error_text=f"{why}\n\n{log_tail(row['run_dir'])}")


def explain(info: dict) -> tuple[str, str, str]:
    """(status, error kind, sentence) for a Slurm job that ended without the worker's word."""
    state, reason, code = info.get("state", ""), info.get("reason", ""), info.get("exit_code", "")
    said = f"Slurm job {info.get('job_id')} ended {state}" + \
        (f" (reason: {reason}" if reason and reason != "None" else " (") + \
        (f", exit code {code})" if code else ")")
    said = said.replace(" ()", "").replace("(, ", "(")
    if state == "OUT_OF_MEMORY":
        return "failed", "oom", f"{said}: the job ran out of memory. Ask for more mem_per_task."
    if state in ("TIMEOUT", "DEADLINE"):
        return "failed", "unknown", (f"{said}: the time limit came before a checkpoint. Give "
                                     "the target a longer time_limit or signal_s, and resume.")
    if state in ("CANCELLED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "UNKNOWN") \
            or not state:
        return "lost", "lost", (f"{said}: the job was stopped from outside the lab (scancel, a "
                                "node failure or preemption). Resume it from its last "
                                "checkpoint.")
    return "failed", "unknown", f"{said} without a final status from the worker."


def cancel(store: Store, row, timeout: float, wait: bool) -> None:
    """Ask the worker to checkpoint and stop (a CANCEL file says: no requeue), then end the
    Slurm job if it is still there after `timeout`."""
    info = json.loads(row["result_json"] or "{}").get("slurm") or {}
    with store.write() as conn:
        conn.execute("UPDATE runs SET cancel_requested=? WHERE id=?", (now(), row["id"]))
    (Path(row["run_dir"]) / slurm.CANCEL_FILE).write_text(str(now()))
    if row["status"] == "queued" or not info.get("job_id"):
        if info.get("job_id"):
            slurm.cancel(info["job_id"], hard=True)
        finish(store, row["id"], "cancelled")
        _mark_ended(store, row["id"])
        return
    slurm.cancel(info["job_id"])
    if not wait:
        return
    if not slurm.wait_gone(info["job_id"], timeout):
        slurm.cancel(info["job_id"], hard=True)
        slurm.wait_gone(info["job_id"], 30.0)
    ingest(store, row["id"], row["run_dir"], _sink(row["run_dir"]))
    finish(store, row["id"], "cancelled")
    _mark_ended(store, row["id"])


TIME_MARGIN = 1.2  # the request's time: the estimate with a margin, plus the set-up
SETUP_S = 300


def request(store: Store, target_name: str, run_seconds: float | None, memory_gb: float,
            processes: int = 1) -> dict:
    """What a run on the target will ask Slurm for, from its resource estimate, and why it
    may not fit the partition: {"text", "problems"} (the Train page, before a launch)."""
    target = get_target(store, target_name)
    limits = slurm.partition_limits(target.partition)
    need_s = (run_seconds or 0) * TIME_MARGIN + SETUP_S
    gpus = target.gpus_per_node * target.nodes
    parts = [f"{target.nodes} node(s)", f"{gpus} GPU(s)" if gpus else "no GPU",
             f"memory {target.mem_per_task or 'default'} per task (needs ~{memory_gb:.1f} GB)",
             f"time limit {target.time_limit} (the run needs ~{need_s / 60:.0f} min with margin)"]
    problems = []
    if run_seconds and need_s > target.time_limit_s():
        parts.append(f"it will checkpoint and requeue about "
                     f"{int(need_s // target.time_limit_s())} time(s)")
    if limits.get("time_s") and target.time_limit_s() > limits["time_s"]:
        problems.append(f"the time limit {target.time_limit} is over partition "
                        f"{limits['partition']}'s {limits['time_s'] // 60} min")
    if limits.get("memory_mb") and not gpus and memory_gb * 1024 > limits["memory_mb"]:
        problems.append(f"~{memory_gb:.1f} GB is more than a node of {limits['partition']} has "
                        f"({limits['memory_mb'] / 1024:.1f} GB)")
    if gpus and processes > gpus:
        problems.append(f"num_processes {processes} is more than the {gpus} GPU(s) asked for")
    text = f"On Slurm target `{target.name}`: " + ", ".join(parts) + "."
    if problems:
        text += " Cannot fit: " + "; ".join(problems) + "."
    return {"text": text, "problems": problems}
