"""Slurm through its own commands: the batch script, `sbatch`, `squeue`/`sacct`/`scontrol`,
`scancel`. Every refusal quotes Slurm's words and says the fix.

The real commands rather than a Python binding (pyslurm): they are what every cluster has, in
every version, on the login node and through ssh alike, and what users already read.

The batch script runs the job's processes under `srun` (one task per node,
`dpo_core.cluster.launch`), traps the time-limit warning (`--signal=B:TERM@N`), passes SIGTERM
on to the job's steps so the worker writes a checkpoint, and then requeues the job
(`scontrol requeue`) unless the lab asked for a cancel (a `CANCEL` file in the run folder).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ..errors import JobError
from .targets import SlurmTarget

SCRIPT_FILE = "slurm.sh"
CANCEL_FILE = "CANCEL"  # written by the lab before it signals a cancel: do not requeue
PENDING = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
           "RESV_DEL_HOLD", "SUSPENDED", "RESIZING")
RUNNING = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING")
COMMAND_TIMEOUT_S = 30.0
STATE_TTL_S = 1.0
_asked: dict[str, tuple[float, dict | None]] = {}  # slurm id -> (when asked, its state)
REPO_ROOT = str(Path(__file__).resolve().parents[2])

FIXES = (  # Slurm's words -> what to change
    ("partition", "Set the target's partition to one that `sinfo -s` lists."),
    ("account", "Set the target's account to one `sacctmgr show assoc user=$USER` lists, or "
                "leave it empty for your default."),
    ("qos", "Set the target's qos to one your account may use, or leave it empty."),
    ("time limit", "Lower the target's time_limit to the partition's limit (`sinfo -o '%P %l'`):"
                   " a longer run checkpoints and requeues itself."),
    ("node configuration", "Ask for what a node has: fewer GPUs, CPUs or memory per task, or "
                           "another partition (`sinfo -o '%P %G %c %m'`)."),
    ("gres", "Check gpus_per_node against the partition's GPUs (`sinfo -o '%P %G'`)."),
    ("memory", "Lower mem_per_task to what a node has (`sinfo -o '%P %m'`)."),
)


def python_of(target: SlurmTarget) -> str:
    """The Python the job runs with on the cluster: the target's env, else the lab's own."""
    if not target.python:
        return sys.executable
    path = Path(target.python).expanduser()
    return str(path / "bin" / "python") if path.suffix == "" and not path.name.startswith(
        "python") else str(path)


def directives(target: SlurmTarget, job_id: str, run_dir: Path) -> list[str]:
    """The #SBATCH options of a job, in a fixed order (tested exactly)."""
    opts = [f"--job-name=dpo-{job_id}", f"--output={run_dir / 'worker.log'}",
            "--open-mode=append", f"--chdir={run_dir}", f"--time={target.time_limit}",
            f"--nodes={target.nodes}", "--ntasks-per-node=1",
            f"--signal=B:TERM@{target.signal_s}",
            "--requeue" if target.requeue else "--no-requeue"]
    for flag, value in (("partition", target.partition), ("account", target.account),
                        ("qos", target.qos), ("cpus-per-task", target.cpus_per_task or ""),
                        ("mem", target.mem_per_task),
                        ("gres", f"gpu:{target.gpus_per_node}" if target.gpus_per_node else "")):
        if value:
            opts.append(f"--{flag}={value}")
    extra = [line.strip().lstrip("#").strip().removeprefix("SBATCH").strip()
             for line in target.extra_sbatch]
    return opts + extra


def batch_script(target: SlurmTarget, job_id: str, run_dir: Path) -> str:
    """The whole batch script of a job."""
    run_dir = Path(run_dir)
    head = "\n".join(f"#SBATCH {o}" for o in directives(target, job_id, run_dir))
    cpus = ' --cpus-per-task="$SLURM_CPUS_PER_TASK"' if target.cpus_per_task else ""
    requeue = "1" if target.requeue else "0"
    return f"""#!/bin/bash
{head}
# Written by DPO Lab for run {job_id}. The lab reads the run folder's channel.jsonl.
export PYTHONPATH={shlex.quote(REPO_ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}
export TOKENIZERS_PARALLELISM=false
RUN_DIR={shlex.quote(str(run_dir))}
echo "[$(date +%T)] slurm job $SLURM_JOB_ID on $(hostname), restart ${{SLURM_RESTART_COUNT:-0}}"
stopping=0
# the time-limit warning or a cancel: the worker (a job step) checkpoints and exits
trap 'stopping=1; scancel --signal=TERM "$SLURM_JOB_ID"' TERM
srun --kill-on-bad-exit=1 --nodes={target.nodes} --ntasks-per-node=1{cpus} \\
  {shlex.quote(python_of(target))} -m dpo_core.cluster.launch "$RUN_DIR" &
child=$!
wait "$child"; rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
# requeue after the time-limit warning or a preemption; not after a cancel (the lab's
# CANCEL file, or anyone's scancel: the job is CANCELLED by then)
state=$(scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null | grep -o 'JobState=[A-Z_]*')
if [ "$stopping" = 1 ] && [ ! -e "$RUN_DIR/{CANCEL_FILE}" ] && [ {requeue} = 1 ] \
   && [ "$state" = JobState=RUNNING ]; then
  echo "[$(date +%T)] checkpoint written; requeueing job $SLURM_JOB_ID"
  scontrol requeue "$SLURM_JOB_ID" && exit 0
fi
exit $rc
"""


def _command(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, env=env,
                              timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise JobError(f"`{args[0]}` was not found on this machine, so nothing was submitted.",
                       "Install Slurm's client commands (Debian: apt-get install slurm-client), "
                       "or run the lab on the cluster's login node.") from exc
    except subprocess.TimeoutExpired as exc:
        raise JobError(f"`{shlex.join(args)}` did not answer in {COMMAND_TIMEOUT_S:.0f} s.",
                       "Check that slurmctld is up (`sinfo`), then try again.") from exc


def slurm_words(text: str) -> str:
    """Slurm's message without its program prefixes, on one line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " ".join(ln.removeprefix("sbatch: error: ").removeprefix("error: ") for ln in lines)


def fix_for(words: str) -> str:
    low = words.lower()
    return next((fix for key, fix in FIXES if key in low),
                "Fix the target (Settings, or `python -m dpo_core targets add`) and start the "
                "run again.")


def submit(target: SlurmTarget, job_id: str, run_dir: Path, env: dict | None = None) -> str:
    """Write the batch script and submit it; returns Slurm's job id, or raises a JobError that
    quotes Slurm."""
    script = Path(run_dir) / SCRIPT_FILE
    script.write_text(batch_script(target, job_id, Path(run_dir)))
    done = _command(["sbatch", "--parsable", str(script)], env)
    words = slurm_words(done.stderr or done.stdout)
    if done.returncode != 0:
        raise JobError(f"Slurm refused the job: {words or f'sbatch exited {done.returncode}'}",
                       fix_for(words))
    slurm_id = done.stdout.strip().split(";")[0]
    if not slurm_id.isdigit():
        raise JobError(f"sbatch answered {done.stdout.strip()!r}, not a job id.",
                       "Check the Slurm client configuration (`sbatch --version`, `sinfo`).")
    return slurm_id


def find_job(job_id: str, since: float) -> str | None:
    """Slurm's id of the job this lab submitted for `job_id` at or after `since` (a lab that
    died between sbatch and writing the id down finds it again instead of submitting twice):
    a pending or running one from squeue, else one accounting remembers; None when none."""
    done = _command(["squeue", "-h", "-n", f"dpo-{job_id}", "-o", "%i"])
    ids = done.stdout.split() if done.returncode == 0 else []
    if ids:
        return ids[-1]
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - 60))
    done = _command(["sacct", "-n", "-X", "-P", "--name", f"dpo-{job_id}", "-S", start, "-o",
                     "JobID"])
    ids = [i for i in done.stdout.split() if i.isdigit()] if done.returncode == 0 else []
    return ids[-1] if ids else None


def job_state(slurm_id: str) -> dict | None:
    """{"state", "reason", "exit_code"} of a job from squeue, else sacct, else scontrol (a job
    that ended a while ago); None when Slurm no longer knows it. Asked at most once a second per
    job (every page refresh reads it)."""
    at, state = _asked.get(str(slurm_id), (0.0, None))
    if time.monotonic() - at < STATE_TTL_S:
        return state
    state = _ask_state(str(slurm_id))
    _asked[str(slurm_id)] = (time.monotonic(), state)
    return state


def _ask_state(slurm_id: str) -> dict | None:
    done = _command(["squeue", "-h", "-j", str(slurm_id), "-o", "%T|%r"])
    if done.returncode == 0 and done.stdout.strip():
        state, _, reason = done.stdout.strip().splitlines()[0].partition("|")
        return {"state": state, "reason": reason, "exit_code": ""}
    done = _command(["sacct", "-n", "-X", "-P", "-j", str(slurm_id), "-o",
                     "State,Reason,ExitCode"])
    if done.returncode == 0 and done.stdout.strip():
        state, reason, code = (done.stdout.strip().splitlines()[0].split("|") + ["", ""])[:3]
        return {"state": state.split()[0], "reason": reason, "exit_code": code}
    return _scontrol_state(slurm_id)


def _scontrol_state(slurm_id: str) -> dict | None:
    done = _command(["scontrol", "show", "job", "-o", str(slurm_id)])
    if done.returncode != 0 or "JobState=" not in done.stdout:
        return None
    fields = dict(part.split("=", 1) for part in done.stdout.split() if "=" in part)
    return {"state": fields.get("JobState", ""), "reason": fields.get("Reason", ""),
            "exit_code": fields.get("ExitCode", "")}


def cancel(slurm_id: str, hard: bool = False) -> None:
    """Ask the job to stop: SIGTERM to the batch script, which passes it to the job's steps
    (the worker checkpoints; signalling srun itself would end the step at once), or with
    `hard` end it now."""
    args = ["scancel", str(slurm_id)] if hard else \
        ["scancel", "--signal=TERM", "--batch", str(slurm_id)]
    done = _command(args)
    words = slurm_words(done.stderr)
    if done.returncode != 0 and "already completing" not in words.lower() \
            and "invalid job id" not in words.lower():
        raise JobError(f"Slurm did not cancel job {slurm_id}: {words}",
                       "Try again, or cancel it yourself with `scancel " + str(slurm_id) + "`.")


def wait_gone(slurm_id: str, timeout: float) -> bool:
    """True once the job has left the running states within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_state(slurm_id)
        if state is None or state["state"] not in RUNNING + PENDING:
            return True
        time.sleep(0.5)
    return False


def partition_limits(partition: str = "") -> dict:
    """{"time_s", "memory_mb", "cpus", "gres"} of a partition (the default one for ''), from
    `sinfo`; {} when Slurm cannot be asked. time_s is None for an unlimited partition."""
    args = ["sinfo", "-h", "-o", "%P|%l|%m|%c|%G"] + (["-p", partition] if partition else [])
    try:
        done = _command(args)
    except JobError:
        return {}
    lines = [ln.split("|") for ln in done.stdout.splitlines() if ln.count("|") == 4]
    if done.returncode != 0 or not lines:
        return {}
    row = next((ln for ln in lines if ln[0].endswith("*")), lines[0]) if not partition \
        else lines[0]
    limit = row[1]
    return {"partition": row[0].rstrip("*"), "gres": row[4],
            "time_s": None if limit in ("infinite", "UNLIMITED") else _seconds(limit),
            "memory_mb": int(row[2].rstrip("+")) if row[2].rstrip("+").isdigit() else None,
            "cpus": int(row[3].rstrip("+")) if row[3].rstrip("+").isdigit() else None}


def _seconds(limit: str) -> int:
    """Slurm's D-HH:MM:SS / HH:MM:SS / MM:SS / MM as seconds."""
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        parts += [0] * (3 - len(parts))
    elif len(parts) < 3:
        parts = [0] * (3 - len(parts)) + parts if len(parts) == 2 else [0, parts[0], 0]
    h, m, sec = parts
    return (int(days) * 86400 if days else 0) + h * 3600 + m * 60 + sec


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """What sbatch passes on to the job: the lab's environment without a Slurm job's own
    variables (a lab started inside an allocation) and with the lab's code importable."""
    out = {k: v for k, v in env.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, out.get("PYTHONPATH")) if p)
    return out
