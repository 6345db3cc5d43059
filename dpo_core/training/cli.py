"""`python -m dpo_core train CONFIG.yaml` and `python -m dpo_core runs ...`."""

from __future__ import annotations

import sys
import time

from ..cli import print_json
from ..store import open_store
from ..workspace import get_workspace
from . import jobs
from .config import RunConfig, apply_overrides

EXIT = {"completed": 0, "cancelled": 3, "failed": 1, "lost": 1}


def register(sub) -> None:
    p = sub.add_parser("train", help="start a DPO run from a YAML config",
                       description="Validate CONFIG.yaml, freeze the run folder, queue the run "
                                   "and (without --detach) follow it to the end.")
    p.add_argument("config", help="YAML file, e.g. recipes/cpu-quick-demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field (dotted keys for nested ones: lora.r=8); repeatable")
    p.add_argument("--detach", action="store_true", help="print the run id and return")
    p.add_argument("--estimate", action="store_true", help="only print the resource estimate")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_train)

    runs = sub.add_parser("runs", help="list, show, cancel, resume and export training runs")
    verbs = runs.add_subparsers(dest="runs_verb", metavar="<command>")
    runs.set_defaults(func=lambda args: runs.print_help() or 0)
    _add(verbs, "list", "list runs", cmd_list)
    _add(verbs, "show", "show a run with its last metrics", cmd_show).add_argument("id")
    p = _add(verbs, "cancel", "stop a run (it writes a checkpoint first)", cmd_cancel)
    p.add_argument("id")
    p = _add(verbs, "resume", "resume a stopped run from its last complete checkpoint",
             cmd_resume)
    p.add_argument("id")
    p.add_argument("--detach", action="store_true", help="do not follow the run")
    p = _add(verbs, "export", "copy or merge a finished run into a model folder", cmd_export)
    p.add_argument("id")
    p.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base")
    p.add_argument("--out", help="output folder (default: exports/<run-id>)")
    p.add_argument("--push", metavar="REPO_ID", help="also push to the Hugging Face hub")


def _add(verbs, name: str, help: str, func):
    p = verbs.add_parser(name, help=help, description=help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=func)
    return p


def cmd_train(args) -> int:
    cfg = apply_overrides(RunConfig.load(args.config), args.overrides)
    store, ws = open_store(), get_workspace()
    if args.estimate:
        from .config import validate
        from .estimate import estimate

        validate(cfg, None, store, ws)  # the same checks a launch makes
        est = estimate(cfg, ws, store=store)
        print_json(est.to_dict()) if args.json else print(est.describe())
        return 0
    run_id = jobs.start_run(store, cfg, ws)
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
        loss = _last_value(store, run_id, "loss")
        text = f"\r[{'#' * done}{'.' * (width - done)}] {step}/{total} {run['status']}"
        if loss is not None:
            text += f" loss {loss:.4f}"
        if text == shown["text"]:
            return
        shown["text"] = text
        sys.stderr.write(text)
        sys.stderr.flush()

    try:
        run = jobs.wait_run(store, run_id, poll=1.0, on_tick=tick)
    except KeyboardInterrupt:
        sys.stderr.write(f"\nstill running in the background: python -m dpo_core runs cancel "
                         f"{run_id}\n")
        return 130
    if not as_json:
        sys.stderr.write("\n")
    _print_run(run, as_json)
    return EXIT.get(run["status"], 1)


def _last_value(store, run_id: str, key: str) -> float | None:
    return store.scalar("SELECT value FROM metrics WHERE run_id=? AND key=? AND split='train' "
                        "ORDER BY step DESC LIMIT 1", (run_id, key))


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
    if run["status"] == "completed" and run["run_dir"]:
        print(f"final model: run:{run['id']}  ({run['run_dir']}/final)")


def cmd_list(args) -> int:
    store = open_store()
    jobs.schedule(store)
    runs = jobs.list_runs(store)
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print("No runs yet. Start one: python -m dpo_core train recipes/smoke-tiny.yaml")
    for r in runs:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
        status = r["status"] + ("?" if r.get("warning") else "")
        print(f"{r['id']:<24} {status:<10} {r['step']:>6}/{r['total_steps']:<6} {created}  "
              f"{r['name']}" + ("  (no heartbeat: see runs show)" if r.get("warning") else ""))
    return 0


def cmd_show(args) -> int:
    store = open_store()
    jobs.schedule(store)
    run = jobs.get_run(store, args.id)
    last = {}
    for m in jobs.read_metrics(store, run["id"]):
        last[m["key"]] = m["value"]
    if args.json:
        print_json({**run, "last_metrics": last})
        return 0
    _print_run(run, False)
    for key in sorted(last):
        print(f"  {key:<28} {last[key]}")
    return 0


def cmd_cancel(args) -> int:
    store = open_store()
    run = jobs.cancel_run(store, jobs.get_run(store, args.id)["id"])
    _print_run(run, args.json)
    return 0


def cmd_resume(args) -> int:
    store = open_store()
    run = jobs.resume_run(store, jobs.get_run(store, args.id)["id"])
    if args.detach:
        _print_run(run, args.json)
        return 0
    return follow(store, run["id"], args.json)


def cmd_export(args) -> int:
    from .export import export_run

    store = open_store()
    out = export_run(store, jobs.get_run(store, args.id)["id"], merge=args.merge, out=args.out,
                     push_to=args.push)
    print_json(out) if args.json else print(out["path"])
    return 0
