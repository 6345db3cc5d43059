"""`python -m dpo_core sweep SWEEP.yaml` and `python -m dpo_core sweeps list|show|pause|...`."""

from __future__ import annotations

import sys

import yaml

from ..store import open_store
from ..sweeps import control, report
from ..sweeps.config import SweepConfig
from .output import add_verb, print_json

EXIT = {"completed": 0, "paused": 3, "stopped": 1, "failed": 1}


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a hyper-parameter sweep from a YAML file",
                       description="Validate SWEEP.yaml, start the sweep as a background job "
                                   "and (without --detach) follow it to the end.")
    p.add_argument("config", help="sweep YAML, e.g. recipes/sweeps/tiny-random.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a field of the base run config (dotted keys); repeatable")
    p.add_argument("--budget", type=int, help="number of runs (overrides the file)")
    p.add_argument("--target", metavar="NAME",
                   help="where every trial trains: local or a cluster target (`targets list`)")
    p.add_argument("--detach", action="store_true", help="print the sweep id and return")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_sweep)

    sw = sub.add_parser("sweeps", help="list, show, pause, resume and extend sweeps")
    verbs = sw.add_subparsers(dest="sweeps_verb", metavar="<command>")
    sw.set_defaults(func=lambda args: sw.print_help() or 0)
    add_verb(verbs, "list", "list sweeps", cmd_list)
    add_verb(verbs, "show", "show a sweep's leaderboard", cmd_show).add_argument("id")
    add_verb(verbs, "pause", "stop a sweep after its current run", cmd_pause).add_argument("id")
    add_verb(verbs, "resume", "continue a paused sweep", cmd_resume).add_argument("id")
    p = add_verb(verbs, "extend", "raise a sweep's budget (and continue it)", cmd_extend)
    p.add_argument("id")
    p.add_argument("--budget", type=int, required=True, help="the new total number of runs")


def cmd_sweep(args) -> int:
    cfg = SweepConfig.load(args.config)
    for item in args.overrides:
        key, _, raw = item.partition("=")
        cfg.set[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    if args.target:
        cfg.set["target"] = args.target
    if args.budget is not None:
        cfg.budget = args.budget  # validation refuses 0 or less
    store = open_store()
    sweep_id = control.start_sweep(store, cfg)
    if args.detach:
        print_json({"id": sweep_id}) if args.json else print(sweep_id)
        return 0
    if not args.json:
        print(sweep_id, flush=True)
    seen = {"n": 0}

    def tick(sweep: dict) -> None:
        done = [t for t in sweep["trials"] if t["status"] in control.FINAL_TRIAL]
        if not args.json:
            for t in done[seen["n"]:]:
                print(_trial_line(t), file=sys.stderr, flush=True)
        seen["n"] = max(seen["n"], len(done))

    sweep = control.wait_sweep(store, sweep_id, on_tick=tick)
    _print(sweep, args.json)
    return EXIT.get(sweep["status"], 1)


def _trial_line(t: dict) -> str:
    value = "-" if t["value"] is None else f"{t['value']:.4g}"
    extra = t["result"].get("error", "") if t["status"] != "completed" else \
        f"gain {t['result'].get('gain', float('nan')):+.3f}" if t["result"].get("gain") \
        is not None else ""
    return f"  trial {t['number']}: {t['status']:9} value {value} {t['params']} {extra}"


def _print(sweep: dict, as_json: bool) -> None:
    rows = report.leaderboard(sweep)
    if as_json:
        print_json({"id": sweep["id"], "name": sweep["name"], "status": sweep["status"],
                    "config": sweep["config"], "baseline": sweep["baseline"],
                    "leaderboard": rows, "best": report.best_trial(sweep)})
        return
    cfg = sweep["config"]
    print(f"{sweep['id']}  {sweep['name']}  {sweep['status']}  "
          f"{len(sweep['trials'])}/{cfg['budget']} runs  {cfg['method']}  "
          f"{cfg['goal']} {cfg['metric']}" + (f"\n  from {cfg['source']}" if cfg["source"] else ""))
    # an imported sweep has no evaluation of its own against a baseline: its eval loss instead
    second = ("eval_loss", "eval_loss", "{:.4g}") if cfg["source"] else ("gain", "gain", "{:+.3f}")
    for row in rows:
        value, other = row.get(cfg["metric"]), row.get(second[0])
        print(f"  {row['name']:24} {row['status']:9} "
              f"{'-' if value is None else f'{value:.4g}':>8}  "
              f"{second[1]} {'-' if other is None else second[2].format(other):>7}  "
              + " ".join(f"{k}={_short(row[k])}" for k in cfg["parameters"] if k in row)
              + (f"  error: {row['error']}" if row["error"] else ""))
    best = report.best_trial(sweep)
    if best and cfg["source"]:
        print(f"best: {best['name']}: its config and summary metrics with "
              f"`python -m dpo_core runs show {best['run_id']}`")
    elif best:
        print(f"best: {best['name']} (run {best['run_id']}): compare with its base via "
              f"`python -m dpo_core compare --right run:{best['run_id']} --prompt ...`, "
              f"export with "
              f"`python -m dpo_core runs export {best['run_id']}`")


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_list(args) -> int:
    items = control.list_sweeps(open_store())
    if args.json:
        print_json([{k: s[k] for k in ("id", "name", "status", "created", "counts")}
                    | {"budget": s["config"]["budget"]} for s in items])
        return 0
    for s in items:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(s["counts"].items())) or "no runs"
        print(f"{s['id']}  {s['name']:20} {s['status']:10} "
              f"{len(s['trials'])}/{s['config']['budget']}  ({counts})")
    return 0


def cmd_show(args) -> int:
    _print(control.get_sweep(open_store(), args.id), args.json)
    return 0


def _status(sweep: dict, as_json: bool) -> int:
    if as_json:
        print_json({"id": sweep["id"], "status": sweep["status"],
                    "budget": sweep["config"]["budget"], "trials": len(sweep["trials"])})
    else:
        print(f"{sweep['id']} {sweep['status']} ({len(sweep['trials'])}/"
              f"{sweep['config']['budget']} runs)")
    return 0


def cmd_pause(args) -> int:
    return _status(control.pause_sweep(open_store(), args.id), args.json)


def cmd_resume(args) -> int:
    return _status(control.resume_sweep(open_store(), args.id), args.json)


def cmd_extend(args) -> int:
    return _status(control.extend_sweep(open_store(), args.id, args.budget), args.json)
