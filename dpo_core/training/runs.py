"""Training runs: start (validate, freeze the folder, queue as a job of kind 'train'), read,
cancel, resume from the last complete checkpoint, delete, and the checkpoints a run offers.

A run is a job like every other (`dpo_core.jobs`): this module adds what only training runs
have (a frozen folder, metrics, checkpoints, resume). `get_run` is the one place that finds a run
by id or unique prefix.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from ..access import require_owner
from ..data.datasets import dataset_version, get_dataset
from ..device import detect_device
from ..errors import DPOLabError, JobError
from ..jobs import lifecycle
from ..jobs.lifecycle import JOB_FILE, schedule, wait_job, write_job_file
from ..jobs.rows import ACTIVE, delete_job, list_rows, new_job_id, update_job
from ..models import DEFAULT_SPEC, RUN_MODEL_FILE, builtin_dir, is_ready
from ..store import Store
from ..workspace import Workspace, get_workspace
from . import refcache
from .checkpoints import COMPLETE_MARKER, RESUME_FILE, last_complete_checkpoint
from .config import RunConfig, validate
from .freeze import freeze_run, render_run, write_config
from .metrics import SINK, forget_after, forget_run
from .planner import Lengths, Plan, plan, unplanned

KIND = "train"
TARGET = "dpo_core.training.worker:train"
RUN_KINDS = ("train", "external")  # what the runs views list: lab runs and imported logs


def start_run(store: Store, cfg: RunConfig, workspace: Workspace | None = None, *,
              launch: bool = True) -> str:
    """Validate, plan the execution, freeze runs/<id>/ with the planned (concrete) config and
    queue the run (it starts when a slot is free)."""
    require_owner("start runs and jobs")
    ws = workspace or get_workspace()
    device = detect_device()
    validate(cfg, device, store, ws)
    run_id = new_job_id(KIND)
    run_dir = ws.runs / run_id
    run_dir.mkdir(parents=True)
    try:
        rendered = render_run(store, cfg, ws)
        chosen = make_plan(cfg, rendered.lengths, device, ws)
        info = freeze_run(store, chosen.apply(cfg), run_dir, ws, run_id, rendered, chosen)
        if _reuses_cache(chosen, chosen.apply(cfg), run_dir, ws, info["train"]):
            chosen = make_plan(cfg, rendered.lengths, device, ws, cache_hit=True)
            write_config(run_dir, chosen.apply(cfg), run_id, chosen)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    planned = chosen.apply(cfg)
    return lifecycle.start_job(
        store, KIND, planned.to_dict(), TARGET, cfg.name or run_id, job_id=run_id,
        run_dir=run_dir, dataset_id=info["dataset_id"], total_steps=info["total_steps"],
        processes_=cfg.num_processes, accelerate_config=cfg.accelerate_config,
        first_progress_s=cfg.first_progress_timeout_min * 60, launch=launch,
        where=cfg.target, sink=SINK,
        result={"estimate": launch_estimate(store, planned, ws),
                "plan": {**chosen.to_dict(), "dropped": info["dropped"]}})


def make_plan(cfg: RunConfig, lengths: Lengths | None, device, ws: Workspace,
              cache_hit: bool = False) -> Plan:
    """The planner with the estimate's memory model (none when the model's shape cannot be
    read, e.g. a hub id offline)."""
    from .estimate import memory_gb

    def memory(c: RunConfig) -> float:
        return memory_gb(c, ws, device)

    try:
        memory(unplanned(cfg))
    except (DPOLabError, OSError, ValueError, KeyError):
        memory = None
    return plan(cfg, lengths, device, memory, cache_hit)


def plan_run(store: Store, cfg: RunConfig, workspace: Workspace | None = None,
             device=None) -> Plan:
    """The plan a launch of `cfg` would make now (the Train page, `train --explain`): the train
    pairs rendered and measured (kept while the dataset and the rendering settings stay)."""
    ws = workspace or get_workspace()
    device = device or detect_device()
    if cfg.model in (DEFAULT_SPEC, "builtin:smollm2") and not is_ready(
            builtin_dir(DEFAULT_SPEC.removeprefix("builtin:"), ws)):
        return make_plan(cfg, None, device, ws)  # never prepare the model just to plan
    return make_plan(cfg, train_lengths(store, cfg, ws), device, ws)


_measured: dict[tuple, Lengths] = {}


def train_lengths(store: Store, cfg: RunConfig, ws: Workspace) -> Lengths:
    """The train pairs' token lengths as a launch renders them (memoised per dataset version,
    model, format and prompt limit)."""
    ds = get_dataset(store, cfg.dataset)
    version = dataset_version(store, ds.id, cfg.train_split)
    key = (str(store.path), ds.id, cfg.train_split, version["n"], version["at"], cfg.model,
           json.dumps(cfg.prompt_format, sort_keys=True, default=str), cfg.max_prompt_length,
           cfg.max_train_pairs)
    if key not in _measured:
        _measured.clear()  # one dataset at a time: the form's current one
        _measured[key] = render_run(store, dataclasses.replace(cfg, eval_split=""), ws).lengths
    return _measured[key]


def _reuses_cache(chosen: Plan, cfg: RunConfig, run_dir: Path, ws: Workspace, rows: int) -> bool:
    """The plan left the reference to be recomputed, yet its log-probs are cached already."""
    ref = chosen.choices.get("precompute_ref_log_probs")
    return (ref is not None and ref.source == "planned" and ref.value is False
            and cfg.method in ("lora", "full")
            and refcache.cached(run_dir, dataclasses.replace(cfg, precompute_ref_log_probs=True),
                                ws.cache, rows))


def read_plan(run: dict) -> Plan | None:
    """The execution plan a run was launched with (None for runs from before the planner)."""
    data = dict((run.get("result") or {}).get("plan") or {})
    data.pop("dropped", None)
    return Plan.from_dict(data) if data else None


def launch_estimate(store: Store, cfg: RunConfig, ws: Workspace) -> dict:
    """The instant estimate, kept with the run until its measured step time replaces it."""
    from .estimate import estimate

    try:
        est = estimate(cfg, ws, store=store)
    except (DPOLabError, OSError, ValueError):
        return {}
    return {"step_s": est.seconds_per_step, **{k: est.run_seconds[k] for k in
                                                ("total", "low", "high")}}


def time_left(run: dict) -> tuple[float | None, str]:
    """(seconds left, 'measured' | 'estimated'): from the measured step time once steps have
    moved, from the launch estimate before."""
    left_steps = max(0, (run.get("total_steps") or 0) - (run.get("step") or 0))
    if run.get("step_seconds"):
        return left_steps * run["step_seconds"], "measured"
    guess = (run.get("result") or {}).get("estimate") or {}
    if guess.get("total"):
        return guess["total"], "estimated"
    return None, ""


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
    return lifecycle.with_queue(store, list_rows(store, kinds=kinds, status=status))


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
    require_owner("resume runs")
    run = get_run(store, run_id)
    if run["status"] in ACTIVE or run["status"] == "completed" or run["kind"] != KIND:
        raise JobError(f"Run {run['id']} is {run['status']}.",
                       "Only failed, cancelled or lost training runs can be resumed.")
    run_dir = Path(run["run_dir"])
    if not (run_dir / JOB_FILE).is_file():  # a run folder from before one job lifecycle
        cfg = RunConfig.load(run_dir / "config.yaml")
        write_job_file(run_dir, run["id"], KIND, TARGET, run["config"], store,
                       cfg.num_processes, cfg.accelerate_config,
                       cfg.first_progress_timeout_min * 60)
    ckpt = last_complete_checkpoint(run_dir)
    step = int(ckpt.name.split("-")[-1]) if ckpt else 0
    (run_dir / RESUME_FILE).write_text(json.dumps({"checkpoint": str(ckpt) if ckpt else None,
                                                   "step": step}))
    forget_after(store, run["id"], step)  # the resumed worker logs from `step` on again
    update_job(store, run["id"], status="queued", finished=None, pid=None, pgid=None,
               proc_start=None, error_kind="", error_text="", step=step,
               resumed_from=ckpt.name if ckpt else "", progressed=None, step_seconds=None,
               cancel_requested=None)
    if launch:
        schedule(store)
    return get_run(store, run["id"])


def best_note(run: dict) -> str:
    """A sentence on the checkpoint a run kept as its final model, when it kept its best one."""
    best = (run.get("result") or {}).get("best")
    if not best:
        return ""
    kept = f"checkpoint-{best['step']} ({best['metric']} {best['value']:.4g})"
    if (run.get("result") or {}).get("stopped_early"):
        patience = run["config"].get("early_stopping_patience", "?")
        return (f"Stopped early at step {run['step']}: {best['metric']} did not improve for "
                f"{patience} evaluations. The final model is the best one, {kept}.")
    return f"The final model is the best checkpoint, {kept}."


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

