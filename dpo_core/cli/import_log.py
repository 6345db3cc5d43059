"""`python -m dpo_core import-log PATH --name NAME`: a training log written elsewhere (TRL's
metrics CSV, trainer_state.json, JSONL, a W&B history export) as a read-only run."""

from __future__ import annotations

from pathlib import Path

from ..store import open_store
from ..training.external_logs import FORMATS, import_training_log
from ..training.metrics import logged_steps
from .output import print_json


def register(sub) -> None:
    p = sub.add_parser("import-log", help="import an external training log as a read-only run",
                       description=f"Import a training log ({FORMATS}) as a read-only run, to "
                                   "compare it with the lab's own runs.")
    p.add_argument("path", help="the log file")
    p.add_argument("--name", default=None, help="run name (default: the file name)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_import_log)


def cmd_import_log(args) -> int:
    store = open_store()
    run_id = import_training_log(store, args.path, args.name)
    steps, keys = logged_steps(store, run_id)
    result = {"run_id": run_id, "name": args.name or Path(args.path).stem, "steps": steps,
              "keys": keys}
    if args.json:
        print_json(result)
    else:
        print(f"Imported {steps} logged steps ({len(keys)} keys) as run {run_id}.")
    return 0
