"""The `eval` verb: pair accuracy on a dataset split, or a BLiMP-layout suite, with an interval."""

from __future__ import annotations

import sys

from .cli import print_json
from .errors import ConfigError
from .evaluation import (
    METHODS,
    SCOPES,
    run_evaluation,
    run_file_evaluation,
    run_suite_evaluation,
)
from .store import open_store


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="accuracy of a model on preference pairs or a minimal-pair suite",
        description="Score chosen vs rejected for every pair of a dataset split (or every "
                    "good/bad sentence pair of a BLiMP-layout folder) and print the accuracy "
                    "with a bootstrap 95% interval. Results are stored for comparison.")
    p.add_argument("--model", required=True,
                   help="model spec: folder, builtin:tiny, builtin:smollm2-135m-instruct, run:<id>")
    p.add_argument("--dataset", help="dataset name or id (not needed with --suite)")
    p.add_argument("--split", default="eval", help="split to score (default eval; 'all' for all)")
    p.add_argument("--method", action="append", choices=METHODS,
                   help="mean-logp (default), sum-logp or implicit-reward; repeat for several")
    p.add_argument("--scope", choices=SCOPES, default="reply",
                   help="score the reply tokens only (default) or the whole text")
    p.add_argument("--suite", metavar="FOLDER",
                   help="a folder of .txt files alternating good/bad sentences (BLiMP layout)")
    p.add_argument("--pairs-file", metavar="JSON",
                   help="a TRL JSON file of {prompt, chosen, rejected} (e.g. HellaSwag noise)")
    p.add_argument("--as-choices", action="store_true",
                   help="with --pairs-file: score HellaSwag-layout prompts as multiple choice")
    p.add_argument("--limit", type=int, help="score only the first N pairs (per file for --suite)")
    p.add_argument("--batch-size", type=int, default=16, help="texts per forward pass")
    p.add_argument("--beta", type=float, help="implicit-reward beta (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--detach", action="store_true",
                   help="run as a background job (kind eval) and print its id; follow it with "
                        "`jobs show ID`")
    p.set_defaults(func=cmd_eval)


def _progress(quiet: bool):
    state = {"last": -1}

    def report(fraction: float, message: str) -> None:
        pct = int(fraction * 20)
        if not quiet and pct != state["last"]:
            state["last"] = pct
            print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)
    return report


def _line(summary: dict, what: str) -> str:
    return (f"{summary['model']} on {what}: {summary['method']} accuracy "
            f"{summary['accuracy']:.1%} [{summary['ci_low']:.1%}, {summary['ci_high']:.1%}] "
            f"n={summary['n']}, mean margin {summary['mean_margin']:+.4f} "
            f"(eval #{summary['eval_id']})")


def _detach(store, args) -> int:
    from .evaluation_jobs import start_evaluation

    if args.beta is not None:
        raise ConfigError("--detach uses the run's own beta.", "Drop --detach to set --beta.")
    split = None if args.split == "all" else args.split
    methods = [] if (args.suite or args.pairs_file) and not args.dataset \
        else (args.method or ["mean-logp"])
    extra = {}
    if args.pairs_file:
        extra = {"pairs_file": args.pairs_file, "file_limit": args.limit,
                 "file_as": ["choices" if args.as_choices else "pairs"],
                 "file_method": (args.method or ["mean-logp"])[0]}
    job_id = start_evaluation(store, [args.model], args.dataset, split, methods,
                              scope=args.scope, limit=args.limit, batch_size=args.batch_size,
                              suite=args.suite, suite_limit=args.limit, **extra)
    if args.json:
        print_json({"job": job_id})
    else:
        print(job_id)
    return 0


def cmd_eval(args) -> int:
    store = open_store()
    if args.detach:
        return _detach(store, args)
    progress = _progress(args.json)
    if args.suite:
        method = (args.method or ["mean-logp"])[0]
        if method == "implicit-reward":
            raise ConfigError("A suite scores single sentences; implicit-reward needs pairs.",
                              "Use --method mean-logp or sum-logp with --suite.")
        result = run_suite_evaluation(store, args.model, args.suite, method, args.limit,
                                      args.batch_size, progress=progress)
        if args.json:
            print_json(result)
            return 0
        for name, row in result["files"].items():
            print(f"  {name:55s} {row['accuracy']:6.1%}  n={row['n']}")
        print(_line(result, args.suite))
        return 0
    if args.pairs_file:
        method = (args.method or ["mean-logp"])[0]
        result = run_file_evaluation(store, args.model, args.pairs_file, args.as_choices, method,
                                     args.limit, args.batch_size, progress=progress)
        if args.json:
            print_json(result)
        else:
            print(_line(result, args.pairs_file))
        return 0
    if not args.dataset:
        raise ConfigError("eval needs --dataset NAME (or --suite FOLDER).",
                          "Pass the dataset to score, e.g. --dataset childes --split eval.")
    split = None if args.split == "all" else args.split
    summaries = run_evaluation(store, args.model, args.dataset, split, args.method or ["mean-logp"],
                               args.scope, args.limit, args.batch_size, args.beta,
                               progress=progress)
    if args.json:
        print_json(summaries)
        return 0
    for summary in summaries:
        print(_line(summary, f"{args.dataset}/{args.split}"))
    return 0
