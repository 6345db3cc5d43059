"""`python -m dpo_core import-log PATH --name NAME`: a training log written elsewhere (TRL's
metrics CSV, trainer_state.json, JSONL, a W&B history export) as a read-only run, or a W&B runs
table (a sweep's export) as an imported sweep's leaderboard."""

from __future__ import annotations

from pathlib import Path

from ..store import open_store
from ..sweeps.imported import import_sweep_export, is_runs_table
from ..training.external_logs import FORMATS, import_training_log
from ..training.metrics import logged_steps
from .output import print_json


def register(sub) -> None:
    p = sub.add_parser("import-log", help="import an external training log as a read-only run",
                       description=f"Import a training log ({FORMATS}) as a read-only run, to "
                                   "compare it with the lab's own runs; a W&B runs table (a "
                                   "sweep's 'Export CSV') becomes an imported sweep with its "
                                   "leaderboard.")
    p.add_argument("path", help="the log file")
    p.add_argument("--name", default=None, help="run name (default: the file name)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_import_log)


def cmd_import_log(args) -> int:
    store = open_store()
    if is_runs_table(args.path):
        return _import_sweep(store, args)
    run_id = import_training_log(store, args.path, args.name)
    steps, keys = logged_steps(store, run_id)
    result = {"run_id": run_id, "name": args.name or Path(args.path).stem, "steps": steps,
              "keys": keys}
    if args.json:
        print_json(result)
    else:
        print(f"Imported {steps} logged steps ({len(keys)} keys) as run {run_id}.")
    return 0


def _import_sweep(store, args) -> int:
    result = import_sweep_export(store, args.path, args.name)
    if args.json:
        print_json(result)
        return 0
    print(f"Imported {result['runs']} runs as sweep {result['sweep_id']} ({result['name']}).")
    if result["best"]:
        best = result["best"]
        print(f"best: {best['name']} ({result['metric']} {best[result['metric']]:.4g}); the "
              f"leaderboard: python -m dpo_core sweeps show {result['sweep_id']}")
    return 0
