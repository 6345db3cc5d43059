"""What each node of a Slurm job runs: `python -m dpo_core.cluster.launch RUN_DIR` (one task per
node under `srun`) becomes the job process itself, or `accelerate launch` of it with this node's
machine rank, the main node's address and a port, all from Slurm's environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PORT_BASE, PORT_SPAN = 20000, 20000  # the main port: derived from the job id, same on every node
RUNNER = ["-m", "dpo_core.jobs.runner"]


def main_address(env: dict[str, str]) -> str:
    """The first node of the allocation (rank 0 listens there)."""
    if env.get("DPO_LAB_MAIN_ADDR"):
        return env["DPO_LAB_MAIN_ADDR"]
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
    if not nodelist:
        return "127.0.0.1"
    done = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                          text=True, timeout=30)
    hosts = done.stdout.split()
    return hosts[0] if done.returncode == 0 and hosts else nodelist.split(",")[0]


def launch_command(job: dict, run_dir: str, env: dict[str, str], python: str) -> list[str]:
    """The command for this node: the runner itself for one process on one node; else
    `accelerate launch` with all processes spread over the job's nodes."""
    processes = int(job.get("processes") or 1)
    machines = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    runner = [*RUNNER, run_dir]
    if processes <= 1 and machines <= 1 and not job.get("accelerate_config"):
        return [python, *runner]
    port = PORT_BASE + int(env.get("SLURM_JOB_ID") or 0) % PORT_SPAN
    cmd = [python, "-m", "accelerate.commands.launch",
           "--num_processes", str(max(processes, machines)),
           "--num_machines", str(machines),
           "--machine_rank", str(int(env.get("SLURM_NODEID") or 0)),
           "--main_process_ip", main_address(env),
           "--main_process_port", str(port)]
    if job.get("accelerate_config"):
        cmd += ["--config_file", str(Path(job["accelerate_config"]).expanduser())]
    else:
        cmd += ["--multi_gpu"]  # DDP; on CPU the processes use gloo
    return cmd + runner


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dpo_core.cluster.launch RUN_DIR", file=sys.stderr)
        return 2
    run_dir = str(Path(argv[0]).resolve())
    job = json.loads((Path(run_dir) / "job.json").read_text())
    cmd = launch_command(job, run_dir, dict(os.environ), sys.executable)
    print(f"node {os.environ.get('SLURM_NODEID', '0')}: {' '.join(cmd)}", flush=True)
    os.execv(cmd[0], cmd)  # the job's processes take this task's place (signals reach them)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
