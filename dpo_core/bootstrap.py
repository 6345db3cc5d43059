"""First start: seed the demo datasets and prepare the default model in a background process.

The preparation runs as `python -m dpo_core prepare-model --report` in its own process group and
reports progress through the store, so the app only reads state and a closed browser changes
nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .models import DEFAULT_SPEC, model_state
from .procs import process_alive
from .store import Store, open_store
from .workspace import Workspace, get_workspace

PREPARE_KEY = "prepare:" + DEFAULT_SPEC


def report_progress(store: Store, fraction: float, message: str, state: str = "running",
                    error: str = "") -> None:
    """Written by the preparing process; read by the app."""
    payload = {"state": state, "fraction": fraction, "message": message, "error": error,
               "pid": os.getpid(), "at": time.time()}
    store.set_setting(PREPARE_KEY, json.dumps(payload))


def prepare_status(ws: Workspace | None = None) -> dict:
    """ready | running (fraction, message) | failed (error) | idle."""
    ws = ws or get_workspace()
    if model_state(DEFAULT_SPEC, ws)["ready"]:
        return {"state": "ready", "fraction": 1.0, "message": "Default model ready."}
    raw = open_store(ws.db_path).get_setting(PREPARE_KEY)
    status = json.loads(raw) if raw else {"state": "idle", "fraction": 0.0, "message": ""}
    if status["state"] == "running" and not process_alive(status.get("pid")):
        status = {**status, "state": "failed",
                  "error": status.get("error") or "The preparation process stopped unexpectedly. "
                  "It restarts on the next start; see cache/prepare-model.log."}
    return status


def start_prepare(ws: Workspace | None = None) -> dict:
    """Start preparing the default model unless it is ready or already being prepared."""
    ws = ws or get_workspace()
    status = prepare_status(ws)
    if status["state"] in ("ready", "running"):
        return status
    log = open(ws.cache / "prepare-model.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dpo_core", "prepare-model", DEFAULT_SPEC, "--report"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "DPO_LAB_HOME": str(ws.home)},
    )
    log.close()
    store = open_store(ws.db_path)
    payload = {"state": "running", "fraction": 0.0, "message": "Starting ...", "error": "",
               "pid": proc.pid, "at": time.time()}
    store.set_setting(PREPARE_KEY, json.dumps(payload))
    return payload


def bootstrap(ws: Workspace | None = None, prepare: bool = True) -> dict:
    """Make a fresh workspace usable: demo data in, default model on its way."""
    ws = ws or get_workspace()
    store = open_store(ws.db_path)
    try:
        from .demo_data import seed_workspace
    except ImportError:  # pragma: no cover - demo data module ships with the project
        seed_workspace = None
    if seed_workspace is not None:
        seed_workspace(store)
    status = start_prepare(ws) if prepare and os.environ.get("DPO_LAB_NO_PREPARE") != "1" \
        else prepare_status(ws)
    return {"workspace": str(ws.home), "prepare": status}
