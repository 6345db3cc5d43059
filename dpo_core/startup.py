"""First start of a workspace: the demo datasets in, and the default model's preparation started
as a background job (kind 'prepare'), so the app only reads state and a closed browser changes
nothing."""

from __future__ import annotations

import os

from .access import as_lab
from .jobs.lifecycle import job_status, list_jobs, start_job
from .jobs.rows import ACTIVE
from .models import DEFAULT_SPEC, model_state
from .store import open_store
from .workspace import Workspace, get_workspace

PREPARE_KIND = "prepare"
PREPARE_TARGET = "dpo_core.models:prepare_model_job"


def prepare_status(ws: Workspace | None = None) -> dict:
    """ready | running (fraction, message) | failed (error) | idle, from the newest prepare job."""
    ws = ws or get_workspace()
    if model_state(DEFAULT_SPEC, ws)["ready"]:
        return {"state": "ready", "fraction": 1.0, "message": "Default model ready."}
    jobs = list_jobs(open_store(ws.db_path), kind=PREPARE_KIND)
    if not jobs:
        return {"state": "idle", "fraction": 0.0, "message": ""}
    job = job_status(open_store(ws.db_path), jobs[0]["id"])
    status = {"state": "running" if job["status"] in ACTIVE else "failed", "job": job["id"],
              "fraction": (job["step"] or 0) / max(job["total_steps"] or 100, 1),
              "message": job["result"].get("message", "Starting ...")}
    if status["state"] == "failed":
        status["error"] = (job["error_text"] or f"The preparation job was {job['status']}.") \
            .strip().splitlines()[0] + f" (log: runs/{job['id']}/worker.log)"
    return status


def start_prepare(ws: Workspace | None = None) -> dict:
    """Start preparing the default model unless it is ready or already being prepared."""
    ws = ws or get_workspace()
    status = prepare_status(ws)
    if status["state"] in ("ready", "running"):
        return status
    start_job(open_store(ws.db_path), PREPARE_KIND, {"spec": DEFAULT_SPEC}, PREPARE_TARGET,
              name=f"prepare {DEFAULT_SPEC}")
    return prepare_status(ws)


def bootstrap(ws: Workspace | None = None, prepare: bool = True) -> dict:
    """Make a fresh workspace usable: demo data in, default model on its way."""
    from .data.demo_datasets import seed_workspace

    ws = ws or get_workspace()
    with as_lab():  # the lab's own set-up, whoever's session opened it first
        seed_workspace(open_store(ws.db_path))
        want = prepare and os.environ.get("DPO_LAB_NO_PREPARE") != "1"
        status = start_prepare(ws) if want else prepare_status(ws)
    return {"workspace": str(ws.home), "prepare": status}
