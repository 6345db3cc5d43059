"""Sweeps as the user drives them: create and start (a background job of kind 'sweep'), read with
their trials, pause after the current run, resume, extend the budget, wait. The `sweeps` and
`sweep_trials` tables live here."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from pathlib import Path

from ..access import require_owner
from ..cluster.targets import LOCAL, get_target
from ..errors import ConfigError, JobError, NotFoundError
from ..jobs.lifecycle import job_status, start_job
from ..jobs.rows import FINAL
from ..store import Store, dumps, now
from .config import SweepConfig, validate_sweep

TARGET = "dpo_core.sweeps.runner:run_sweep_job"
FINAL_TRIAL = ("completed", "failed", "pruned", "cancelled")
RUNNING = ("running", "pausing", "created")  # a sweep in these states has (or gets) a job


def _sweep_dict(row) -> dict:
    d = dict(row)
    d["config"] = json.loads(d.pop("config_json") or "{}")
    d["baseline"] = json.loads(d.pop("baseline_json") or "{}")
    return d


def get_sweep(store: Store, sweep_id: str) -> dict:
    """The sweep row (status reconciled with its job) and its trials."""
    row = _find(store, sweep_id)
    sweep = _sweep_dict(row)
    if sweep["status"] in ("running", "pausing") and sweep["job_id"]:
        job = job_status(store, sweep["job_id"])
        if job["status"] in FINAL:  # the job ended without writing the sweep's status
            paused = job["status"] == "cancelled" or sweep["status"] == "pausing"
            sweep["status"] = "paused" if paused else "stopped"
            sweep["error"] = job.get("error_text") or ""
    sweep["trials"] = list_trials(store, sweep["id"])
    return sweep


def _find(store: Store, sweep_id: str):
    """A sweep by id, unique id prefix or name; several matches are an error, never a guess."""
    listing = "List sweeps with `python -m dpo_core sweeps list`."
    row = store.query_one("SELECT * FROM sweeps WHERE id=?", (sweep_id,))
    if row is not None:
        return row
    pattern = sweep_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = store.query("SELECT * FROM sweeps WHERE id LIKE ? ESCAPE '\\' OR name=? "
                       "ORDER BY created DESC", (pattern, sweep_id))
    if len(rows) > 1:
        raise NotFoundError(f"'{sweep_id}' matches several sweeps: "
                            f"{', '.join(r['id'] for r in rows[:5])}.",
                            f"Give more of the id. {listing}")
    if not rows:
        raise NotFoundError(f"No sweep '{sweep_id}' in this workspace.", listing)
    return rows[0]


def list_sweeps(store: Store) -> list[dict]:
    """Sweeps newest first, with trial counts."""
    out = []
    for row in store.query("SELECT id FROM sweeps ORDER BY created DESC"):
        s = get_sweep(store, row["id"])
        counts = {}
        for t in s["trials"]:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        s["counts"] = counts
        out.append(s)
    return out


def list_trials(store: Store, sweep_id: str) -> list[dict]:
    rows = store.query("SELECT * FROM sweep_trials WHERE sweep_id=? ORDER BY number", (sweep_id,))
    out = []
    for r in rows:
        d = dict(r)
        d["params"] = json.loads(d.pop("params_json") or "{}")
        d["result"] = json.loads(d.pop("gain_json") or "{}")
        out.append(d)
    return out


def create_sweep(store: Store, cfg: SweepConfig) -> str:
    """Validate and insert a sweep (not started); returns its id. A relative base recipe path is
    made absolute here: the sweep's job runs in its own folder."""
    require_owner("start sweeps")
    if isinstance(cfg.base, str) and cfg.base and not Path(cfg.base).is_absolute():
        cfg = dataclasses.replace(cfg, base=str(Path(cfg.base).resolve()))
    validate_sweep(cfg)
    get_target(store, cfg.set.get("target") or LOCAL)  # an unknown target: refused, named
    sweep_id = new_sweep_id()
    with store.write() as conn:
        conn.execute("INSERT INTO sweeps(id, name, config_json, status, created) "
                     "VALUES(?,?,?,?,?)", (sweep_id, cfg.name, dumps(cfg.to_dict()), "created",
                                          now()))
    return sweep_id


def new_sweep_id() -> str:
    return "sweep-" + time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def start_sweep(store: Store, cfg: SweepConfig) -> str:
    """Create the sweep and start its background job; returns the sweep id."""
    sweep_id = create_sweep(store, cfg)
    _launch(store, sweep_id)
    return sweep_id


def _launch(store: Store, sweep_id: str) -> str:
    job_id = start_job(store, "sweep", {"sweep_id": sweep_id}, TARGET,
                       name=f"sweep {sweep_id}")
    set_sweep(store, sweep_id, status="running", job_id=job_id)
    return job_id


def set_sweep(store: Store, sweep_id: str, **cols) -> None:
    sets = ", ".join(f"{k}=?" for k in cols)
    with store.write() as conn:
        conn.execute(f"UPDATE sweeps SET {sets} WHERE id=?", (*cols.values(), sweep_id))


def pause_sweep(store: Store, sweep_id: str) -> dict:
    """Stop the sweep after its current run (that run finishes and is recorded)."""
    require_owner("pause sweeps")
    sweep = get_sweep(store, sweep_id)
    if sweep["status"] not in ("running", "pausing"):
        raise JobError(f"Sweep {sweep['id']} is {sweep['status']}, not running.",
                       "Only a running sweep can be paused.")
    set_sweep(store, sweep["id"], status="pausing")  # the job reads it between runs and stops
    return get_sweep(store, sweep["id"])


def resume_sweep(store: Store, sweep_id: str) -> dict:
    """Start a new job for a paused or stopped sweep with budget left."""
    require_owner("resume sweeps")
    sweep = _own(get_sweep(store, sweep_id))
    if sweep["status"] in ("running", "pausing"):
        raise JobError(f"Sweep {sweep['id']} is {sweep['status']}.",
                       "Wait for it to pause, or pause it first.")
    if len(sweep["trials"]) >= sweep["config"]["budget"]:
        raise JobError(f"Sweep {sweep['id']} has used its budget of "
                       f"{sweep['config']['budget']} runs.",
                       f"Raise it: `python -m dpo_core sweeps extend {sweep['id']} --budget N`.")
    _launch(store, sweep["id"])
    return get_sweep(store, sweep["id"])


def extend_sweep(store: Store, sweep_id: str, budget: int, start: bool = True) -> dict:
    """Raise the budget to `budget` runs; a finished sweep starts again (unless start=False)."""
    require_owner("extend sweeps")
    sweep = _own(get_sweep(store, sweep_id))
    old = sweep["config"]["budget"]
    if budget <= old:
        raise ConfigError(f"The new budget {budget} is not above the current {old}.",
                          f"Pass --budget {old + 2} or more.")
    config = {**sweep["config"], "budget": int(budget)}
    status = sweep["status"] if sweep["status"] in ("running", "pausing") else "paused"
    with store.write() as conn:
        conn.execute("UPDATE sweeps SET config_json=?, status=? WHERE id=?",
                     (dumps(config), status, sweep["id"]))
    if start and status == "paused":
        return resume_sweep(store, sweep["id"])
    return get_sweep(store, sweep["id"])


def _own(sweep: dict) -> dict:
    """The sweep, if the lab ran it: an imported one (a W&B table) is a read-only record."""
    if sweep["config"].get("source"):
        raise JobError(f"Sweep {sweep['id']} was imported ({sweep['config']['source']}); it "
                       "has no base run to continue from.",
                       "Start a sweep of your own with the same parameters: `python -m dpo_core "
                       "sweep recipes/sweeps/tiny-random.yaml --set ...`, or the Sweeps page.")
    return sweep


def wait_sweep(store: Store, sweep_id: str, poll: float = 1.0, on_tick=None,
               timeout: float | None = None) -> dict:
    """Block until the sweep is no longer running (the CLI and tests)."""
    start = time.monotonic()
    while True:
        sweep = get_sweep(store, sweep_id)
        if on_tick:
            on_tick(sweep)
        if sweep["status"] not in ("running", "pausing", "created"):
            return sweep
        if timeout is not None and time.monotonic() - start > timeout:
            return sweep
        time.sleep(poll)
