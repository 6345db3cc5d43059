"""`python -m dpo_core generate CONFIG.yaml`: build pairs with a model as a background job."""

from __future__ import annotations

import sys
import time

from ..builders.config import load_config
from ..builders.job import start_build
from ..jobs.lifecycle import cancel_job, job_status
from ..jobs.rows import FINAL
from ..store import open_store
from .jobs import job_line
from .output import print_json


def register(sub) -> None:
    p = sub.add_parser("generate", help="build preference pairs with a model (teacher, weak "
                       "model, best-of-N) as a background job",
                       description="Build a new dataset from a generate config "
                       "(recipes/generate/*.yaml). The same config run again resumes.")
    p.add_argument("config", help="YAML file with the builder's settings")
    p.add_argument("--detach", action="store_true", help="print the job id and return")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args) -> int:
    store = open_store()
    job_id = start_build(store, load_config(args.config))
    if args.detach:
        if args.json:
            print_json({"job_id": job_id})
        else:
            print(job_id)
        return 0
    job = follow(store, job_id, quiet=args.json)
    if args.json:
        print_json(job)
    return 0 if job["status"] == "completed" else 1


def follow(store, job_id: str, quiet: bool = False, poll_s: float = 1.0) -> dict:
    """Print progress until the job ends; Ctrl-C cancels it (finished pairs are kept)."""
    if not quiet:
        print(f"job {job_id} started; Ctrl-C cancels (finished pairs are kept)", file=sys.stderr)
    last = None
    try:
        while (job := job_status(store, job_id))["status"] not in FINAL:
            line = job_line(job)
            if line != last and not quiet:
                print(line, file=sys.stderr)
                last = line
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print("cancelling ...", file=sys.stderr)
        job = cancel_job(store, job_id)
    if not quiet:
        print(job_line(job))
        if job["error_text"]:
            print(job["error_text"], file=sys.stderr)
    return job
