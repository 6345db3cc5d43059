"""`python -m dpo_core jobs list|show|cancel`: background jobs other than training runs
(evaluations, pair builds, sweeps, model preparation)."""

from __future__ import annotations

from ..jobs.lifecycle import cancel_job, job_status, list_jobs, log_tail
from ..store import open_store
from .output import add_verb, print_json


def register(sub) -> None:
    jobs = sub.add_parser("jobs", help="background jobs other than training (evaluation, pair "
                          "building, sweeps, model preparation)")
    verbs = jobs.add_subparsers(dest="jobs_verb", metavar="<command>")
    jobs.set_defaults(func=lambda args: jobs.print_help() or 0)
    add_verb(verbs, "list", "list jobs, newest first", cmd_list)
    add_verb(verbs, "show", "show a job and its log tail", cmd_show).add_argument("id")
    add_verb(verbs, "cancel", "cancel a job (finished work is kept)", cmd_cancel).add_argument("id")


def job_line(job: dict) -> str:
    r = job["result"]
    counts = f" kept {r['kept']} dropped {r.get('dropped', 0)}" if "kept" in r else ""
    return (f"{job['id']}  {job['kind']:<9} {job['status']:<10} "
            f"{job['step']}/{job['total_steps']}{counts}  {job['name']}")


def cmd_list(args) -> int:
    jobs = list_jobs(open_store())
    if args.json:
        print_json(jobs)
    else:
        print("\n".join(job_line(j) for j in jobs) or "No jobs yet.")
    return 0


def cmd_show(args) -> int:
    job = job_status(open_store(), args.id)
    job["log_tail"] = log_tail(job["run_dir"])
    if args.json:
        print_json(job)
        return 0
    print(job_line(job))
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
        print(job_line(job))
    return 0
