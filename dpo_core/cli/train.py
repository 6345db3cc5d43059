"""`python -m dpo_core train CONFIG.yaml` and `python -m dpo_core runs ...`."""

from __future__ import annotations

import dataclasses
import sys
import time

from ..data.checks import identical_warning
from ..jobs.lifecycle import schedule
from ..publish.model_export import export_run
from ..store import open_store
from ..training import runs
from ..training.config import EXECUTIONS, RunConfig, apply_overrides, validate
from ..training.estimate import duration, estimate
from ..training.insights import curve_notes
from ..training.metrics import last_values, read_metrics
from ..workspace import get_workspace
from .output import add_verb, print_json

EXIT = {"completed": 0, "cancelled": 3, "failed": 1, "lost": 1}


def register(sub) -> None:
    p = sub.add_parser("train", help="start a DPO run from a YAML config",
                       description="Validate CONFIG.yaml, freeze the run folder, queue the run "
                                   "and (without --detach) follow it to the end.")
    p.add_argument("config", help="YAML file, e.g. recipes/train/cpu-quick-demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field (dotted keys for nested ones: lora.r=8); repeatable")
    p.add_argument("--detach", action="store_true", help="print the run id and return")
    p.add_argument("--target", metavar="NAME",
                   help="where it trains: local or a cluster target (`targets list`)")
    p.add_argument("--estimate", action="store_true",
                   help="only print the resource estimate: memory, and the step and whole-run "
                        "time measured on this machine (a few real steps, median)")
    p.add_argument("--rough", action="store_true",
                   help="with --estimate: the instant FLOPs-based time, without measuring")
    p.add_argument("--explain", action="store_true",
                   help="only print the execution plan: each setting the run would get, why, "
                        "and TRL's default for it (nothing is launched)")
    p.add_argument("--execution", choices=EXECUTIONS,
                   help="lab (the planner's settings, the default) or trl-defaults (TRL "
                        "1.16's own, to compare); the optimisation settings stay the same")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_train)

    runs = sub.add_parser("runs", help="list, show, cancel, resume and export training runs")
    verbs = runs.add_subparsers(dest="runs_verb", metavar="<command>")
    runs.set_defaults(func=lambda args: runs.print_help() or 0)
    add_verb(verbs, "list", "list runs", cmd_list)
    add_verb(verbs, "show", "show a run with its last metrics", cmd_show).add_argument("id")
    p = add_verb(verbs, "cancel", "stop a run (it writes a checkpoint first)", cmd_cancel)
    p.add_argument("id")
    p = add_verb(verbs, "resume", "resume a stopped run from its last complete checkpoint",
             cmd_resume)
    p.add_argument("id")
    p.add_argument("--detach", action="store_true", help="do not follow the run")
    p = add_verb(verbs, "export", "copy or merge a finished run into a model folder", cmd_export)
    p.add_argument("id")
    p.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base")
    p.add_argument("--out", help="output folder (default: exports/<run-id>)")
    p.add_argument("--push", metavar="REPO_ID", help="also push to the Hugging Face hub")


def cmd_train(args) -> int:
    cfg = apply_overrides(RunConfig.load(args.config), args.overrides)
    if args.execution:
        cfg = dataclasses.replace(cfg, execution=args.execution)
    if args.target:
        cfg = dataclasses.replace(cfg, target=args.target)
    store, ws = open_store(), get_workspace()
    if args.explain:
        validate(cfg, None, store, ws)
        plan = runs.plan_run(store, cfg, ws)
        print_json(plan.to_dict()) if args.json else print("\n".join(plan.explain()))
        return 0
    if args.estimate:
        validate(cfg, None, store, ws)  # the same checks a launch makes
        say = None if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
        est = estimate(cfg, ws, store=store, measure=not args.rough, progress=say)
        print_json(est.to_dict()) if args.json else print(est.describe())
        return 0
    run_id = runs.start_run(store, cfg, ws)
    if warning := identical_warning(store, cfg.dataset):
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if args.detach:
        print_json({"id": run_id}) if args.json else print(run_id)
        return 0
    if not args.json:
        print(run_id, flush=True)
    return follow(store, run_id, args.json)


def follow(store, run_id: str, as_json: bool) -> int:
    """Follow a run with a progress bar on stderr; exit code from its final status."""
    shown = {"text": ""}

    def tick(run: dict) -> None:
        if as_json:
            return
        total, step = run["total_steps"] or 0, run["step"] or 0
        width = 30
        done = int(width * step / total) if total else 0
        loss = last_values(store, run_id, ["loss"]).get("loss")
        text = f"\r[{'#' * done}{'.' * (width - done)}] {step}/{total} {run['status']}"
        if loss is not None:
            text += f" loss {loss:.4f}"
        if text == shown["text"]:
            return
        shown["text"] = text
        sys.stderr.write(text)
        sys.stderr.flush()

    try:
        run = runs.wait_run(store, run_id, poll=1.0, on_tick=tick)
    except KeyboardInterrupt:
        sys.stderr.write(f"\nstill running in the background: python -m dpo_core runs cancel "
                         f"{run_id}\n")
        return 130
    if not as_json:
        sys.stderr.write("\n")
    _print_run(run, as_json)
    return EXIT.get(run["status"], 1)


def _print_run(run: dict, as_json: bool) -> None:
    if as_json:
        print_json(run)
        return
    cfg = run["config"]
    what = (f"imported log of {cfg.get('source', '?')}" if run["kind"] == "external"
            else f"{cfg.get('model', '')} on {cfg.get('dataset', '')}")
    print(f"{run['id']}  {run['status']}  step {run['step']}/{run['total_steps']}  {what}")
    if run["error_kind"]:
        print(f"error ({run['error_kind']}): {run['error_text'].splitlines()[0]}")
    if run.get("warning"):
        print(f"warning: {run['warning']}")
    if run.get("where"):
        print(run["where"].removeprefix(" · "))
    _print_time(run)
    plan = runs.read_plan(run)
    if plan is not None:
        print(f"execution: {plan.execution}")
        for line in plan.explain():
            print(f"  {line}")
    if run["status"] == "completed" and run["run_dir"]:
        print(f"final model: run:{run['id']}  ({run['run_dir']}/final)")
    if runs.best_note(run):
        print(runs.best_note(run))


def _print_time(run: dict) -> None:
    guess = (run.get("result") or {}).get("estimate") or {}
    measured = run.get("step_seconds")
    if measured or guess.get("step_s"):
        both = f" (estimated {guess['step_s']:.2f} s at launch)" if measured and guess else ""
        print(f"time per step: {'measured' if measured else 'estimated'} "
              f"{measured or guess['step_s']:.2f} s{both}")
    left, how = runs.time_left(run)
    if left is not None and run["status"] in ("queued", "running"):
        print(f"time left: ~{duration(left)} ({how})")


def cmd_list(args) -> int:
    store = open_store()
    schedule(store)
    found = runs.list_runs(store)
    if args.json:
        print_json(found)
        return 0
    if not found:
        print("No runs yet. Start one: python -m dpo_core train recipes/train/smoke-tiny.yaml")
    for r in found:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        status = r["status"] + ("?" if r.get("warning") else "")
        print(f"{r['id']:<24} {status:<10} {r['step']:>6}/{r['total_steps']:<6} {created}  "
              f"{r['name']}" + ("  (no heartbeat: see runs show)" if r.get("warning") else ""))
    return 0


def cmd_show(args) -> int:
    store = open_store()
    schedule(store)
    run = runs.get_run(store, args.id)
    rows = read_metrics(store, run["id"])
    last = {m["key"]: m["value"] for m in rows}
    history: dict[str, list] = {}
    for m in rows:
        history.setdefault(m["key"], []).append((m["step"], m["value"]))
    notes = curve_notes(history, run["config"])
    if args.json:
        print_json({**run, "last_metrics": last, "notes": [n.to_dict() for n in notes]})
        return 0
    _print_run(run, False)
    for key in sorted(last):
        print(f"  {key:<28} {last[key]}")
    for note in notes:
        print(f"{note.severity}: {note.headline()}. {note.text}\n  try: {note.fix}")
    return 0


def cmd_cancel(args) -> int:
    store = open_store()
    run = runs.cancel_run(store, args.id)
    _print_run(run, args.json)
    return 0


def cmd_resume(args) -> int:
    store = open_store()
    run = runs.resume_run(store, args.id)
    if args.detach:
        _print_run(run, args.json)
        return 0
    return follow(store, run["id"], args.json)


def cmd_export(args) -> int:
    store = open_store()
    out = export_run(store, args.id, merge=args.merge, out=args.out, push_to=args.push)
    print_json(out) if args.json else print(out["path"])
    return 0
