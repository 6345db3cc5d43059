"""`python -m dpo_core generate CONFIG.yaml` (pair builders) and `jobs list|show|cancel`."""

from __future__ import annotations

import sys
import time

from ..cli import print_json
from ..jobs import FINAL, cancel_job, job_status, list_jobs, log_tail
from ..store import open_store
from .generators import load_config, start_generate


def register(sub) -> None:
    p = sub.add_parser("generate", help="build preference pairs with a model (teacher, weak "
                       "model, best-of-N) as a background job",
                       description="Build a new dataset from a generate config "
                       "(recipes/generate-*.yaml). The same config run again resumes.")
    p.add_argument("config", help="YAML file with the builder's settings")
    p.add_argument("--detach", action="store_true", help="print the job id and return")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_generate)

    jobs = sub.add_parser("jobs", help="background jobs other than training (generation, ...)")
    verbs = jobs.add_subparsers(dest="jobs_verb", metavar="<command>")
    jobs.set_defaults(func=lambda args: jobs.print_help() or 0)
    _add(verbs, "list", "list jobs, newest first", cmd_list)
    _add(verbs, "show", "show a job and its log tail", cmd_show).add_argument("id")
    _add(verbs, "cancel", "cancel a job (finished work is kept)", cmd_cancel).add_argument("id")


def _add(verbs, name: str, help: str, func):
    p = verbs.add_parser(name, help=help, description=help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=func)
    return p


def _line(job: dict) -> str:
    r = job["result"]
    counts = f" kept {r['kept']} dropped {r.get('dropped', 0)}" if "kept" in r else ""
    return (f"{job['id']}  {job['kind']:<9} {job['status']:<10} "
            f"{job['step']}/{job['total_steps']}{counts}  {job['name']}")


def cmd_generate(args) -> int:
    store = open_store()
    job_id = start_generate(store, load_config(args.config))
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
            line = _line(job)
            if line != last and not quiet:
                print(line, file=sys.stderr)
                last = line
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print("cancelling ...", file=sys.stderr)
        job = cancel_job(store, job_id)
    if not quiet:
        print(_line(job))
        if job["error_text"]:
            print(job["error_text"], file=sys.stderr)
    return job


def cmd_list(args) -> int:
    jobs = list_jobs(open_store())
    if args.json:
        print_json(jobs)
    else:
        print("\n".join(_line(j) for j in jobs) or "No jobs yet.")
    return 0


def cmd_show(args) -> int:
    job = job_status(open_store(), args.id)
    job["log_tail"] = log_tail(job["run_dir"])
    if args.json:
        print_json(job)
        return 0
    print(_line(job))
    for key in ("run_dir", "error_kind", "error_text"):
        if job[key]:
            print(f"{key}: {job[key]}")
    print(f"result: {job['result']}")
    print(job["log_tail"])
    return 0


def cmd_cancel(args) -> int:
    job = cancel_job(open_store(), args.id)
    if args.json:
        print_json(job)
    else:
        print(_line(job))
    return 0
