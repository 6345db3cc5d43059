"""Training runs: start (validate, freeze the folder, queue as a job of kind 'train'), read,
cancel, resume from the last complete checkpoint, delete, and the checkpoints a run offers.

A run is a job like every other (`dpo_core.jobs`): this module adds what only training runs
have (a frozen folder, metrics, checkpoints, resume). `get_run` is the one place that finds a run
by id or unique prefix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..device import detect_device
from ..errors import JobError
from ..jobs import lifecycle
from ..jobs.lifecycle import JOB_FILE, schedule, wait_job, write_job_file
from ..jobs.rows import ACTIVE, delete_job, list_rows, new_job_id, update_job
from ..models import RUN_MODEL_FILE
from ..store import Store
from ..workspace import Workspace, get_workspace
from .checkpoints import COMPLETE_MARKER, last_complete_checkpoint
from .config import RunConfig, validate
from .freeze import freeze_run
from .metrics import forget_after, forget_run

KIND = "train"
TARGET = "dpo_core.training.worker:train"
RESUME_FILE = "resume.json"  # the checkpoint a resumed worker continues from
RUN_KINDS = ("train", "external")  # what the runs views list: lab runs and imported logs


def start_run(store: Store, cfg: RunConfig, workspace: Workspace | None = None, *,
              launch: bool = True) -> str:
    """Validate, freeze runs/<id>/ and queue the run (it starts when a slot is free)."""
    ws = workspace or get_workspace()
    validate(cfg, detect_device(), store, ws)
    run_id = new_job_id(KIND)
    run_dir = ws.runs / run_id
    run_dir.mkdir(parents=True)
    try:
        info = freeze_run(store, cfg, run_dir, ws, run_id)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return lifecycle.start_job(
        store, KIND, cfg.to_dict(), TARGET, cfg.name or run_id, job_id=run_id, run_dir=run_dir,
        dataset_id=info["dataset_id"], total_steps=info["total_steps"],
        processes_=cfg.num_processes, accelerate_config=cfg.accelerate_config, launch=launch)


def get_run(store: Store, run_id: str) -> dict:
    """A run (or any job) by id or unique id prefix, its process checked if it runs."""
    return lifecycle.job_status(store, run_id, "run")


def run_spec(store: Store, spec: str) -> str:
    """`run:<unique prefix>` as `run:<full id>`; any other model spec as it is."""
    return f"run:{get_run(store, spec[4:])['id']}" if spec.startswith("run:") else spec


def list_runs(store: Store, status: str | None = None,
              kinds: tuple[str, ...] = RUN_KINDS) -> list[dict]:
    """Training runs (and imported training logs), newest first."""
    lifecycle.refresh(store)
    return list_rows(store, kinds=kinds, status=status)


def cancel_run(store: Store, run_id: str, timeout: float = lifecycle.CANCEL_TIMEOUT_S,
               wait: bool = True) -> dict:
    """Stop a run: it finishes its step, writes a checkpoint and exits (SIGKILL after
    `timeout`); a queued run is dropped from the queue."""
    return lifecycle.cancel_job(store, run_id, timeout, wait, noun="run")


def wait_run(store: Store, run_id: str, poll: float = 1.0, on_tick=None,
             timeout: float | None = None) -> dict:
    """Block until the run has a final status (launching queued runs meanwhile)."""
    return wait_job(store, run_id, poll, timeout, on_tick, noun="run")


def resume_run(store: Store, run_id: str, launch: bool = True) -> dict:
    """Queue a stopped run again from its last complete checkpoint (from scratch if none)."""
    run = get_run(store, run_id)
    if run["status"] in ACTIVE or run["status"] == "completed" or run["kind"] != KIND:
        raise JobError(f"Run {run['id']} is {run['status']}.",
                       "Only failed, cancelled or lost training runs can be resumed.")
    run_dir = Path(run["run_dir"])
    if not (run_dir / JOB_FILE).is_file():  # a run folder from before one job lifecycle
        cfg = RunConfig.load(run_dir / "config.yaml")
        write_job_file(run_dir, run["id"], KIND, TARGET, run["config"], store,
                       cfg.num_processes, cfg.accelerate_config)
    ckpt = last_complete_checkpoint(run_dir)
    step = int(ckpt.name.split("-")[-1]) if ckpt else 0
    (run_dir / RESUME_FILE).write_text(json.dumps({"checkpoint": str(ckpt) if ckpt else None,
                                                   "step": step}))
    forget_after(store, run["id"], step)  # the resumed worker logs from `step` on again
    update_job(store, run["id"], status="queued", finished=None, pid=None, pgid=None,
               proc_start=None, error_kind="", error_text="", step=step,
               resumed_from=ckpt.name if ckpt else "")
    if launch:
        schedule(store)
    return get_run(store, run["id"])


def delete_run(store: Store, run_id: str) -> None:
    """Delete a finished run: its folder, its metrics and samples, its row."""
    run = get_run(store, run_id)
    if run["status"] in ACTIVE:
        raise JobError(f"Run {run['id']} is {run['status']}.", "Cancel it first.")
    with store.write():
        forget_run(store, run["id"])
        delete_job(store, run["id"])
    if run["run_dir"]:
        shutil.rmtree(run["run_dir"], ignore_errors=True)


def loadable_checkpoints(run: dict) -> list[Path]:
    """A run's complete checkpoints that load as a model (chat and evaluation can use them)."""
    folder = Path(run.get("run_dir") or "") / "checkpoints"
    if not run.get("run_dir") or not folder.is_dir():
        return []
    return [c for c in sorted(folder.glob("checkpoint-*"))
            if (c / COMPLETE_MARKER).is_file()
            and ((c / RUN_MODEL_FILE).is_file() or (c / "config.json").is_file())]


def finished_model_specs(store: Store) -> list[str]:
    """`run:<id>` of every completed training run with a final model (model pickers)."""
    return [f"run:{r['id']}" for r in list_runs(store, "completed", (KIND,))
            if (Path(r["run_dir"] or "") / "final").is_dir()]

