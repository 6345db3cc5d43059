"""`eval` (accuracy of a model on pairs, a suite or a file, with an interval) and `evals`
(stored evaluations: list, show, compare, flips)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from ..errors import ConfigError
from ..evaluation.evaluate import run_evaluation, run_file_evaluation, run_suite_evaluation
from ..evaluation.job import start_evaluation
from ..evaluation.results import compare_evals, eval_details, flip_analysis, list_evals
from ..evaluation.scoring import METHODS, SCOPES
from ..store import open_store
from .output import print_json


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

    p = sub.add_parser("evals", help="stored evaluations: list, show, compare, flips",
                       description="Read the evaluations `eval` and the Evaluate page stored.")
    verbs = p.add_subparsers(dest="evals_verb", metavar="<action>", required=True)
    q = verbs.add_parser("list", help="stored evaluations, newest first")
    q.add_argument("--dataset", help="only those of this dataset")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_evals_list)
    q = verbs.add_parser("show", help="one evaluation: its numbers and per-pair results")
    q.add_argument("eval_id", type=int, metavar="ID")
    q.add_argument("--pairs", type=int, default=10, help="per-pair rows to print (default 10)")
    q.add_argument("--json", action="store_true", help="the numbers and every per-pair result")
    q.set_defaults(func=cmd_evals_show)
    q = verbs.add_parser("compare", help="a model x benchmark table of several evaluations")
    q.add_argument("eval_ids", type=int, nargs="+", metavar="ID")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_evals_compare)
    q = verbs.add_parser("flips", help="pairs the baseline got wrong and the tuned model right, "
                                       "and the reverse")
    q.add_argument("baseline", type=int, metavar="BASELINE_ID")
    q.add_argument("tuned", type=int, metavar="TUNED_ID")
    q.add_argument("--out", help="also write every flip to this CSV file")
    q.add_argument("--limit", type=int, default=10, help="flips of each kind to print")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_evals_flips)


def _progress(quiet: bool):
    state = {"last": -1}

    def report(fraction: float, message: str) -> None:
        pct = int(fraction * 20)
        if not quiet and pct != state["last"]:
            state["last"] = pct
            print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)
    return report


def _line(summary: dict, what: str) -> str:
    margin = summary.get("mean_margin")  # multiple choice has no chosen-minus-rejected margin
    shown = "" if margin is None or summary["method"].startswith("choices") \
        else f", mean margin {margin:+.4f}"
    return (f"{summary['model']} on {what}: {summary['method']} accuracy "
            f"{summary['accuracy']:.1%} [{summary['ci_low']:.1%}, {summary['ci_high']:.1%}] "
            f"n={summary['n']}{shown} (eval #{summary['eval_id']})")


def _detach(store, args) -> int:
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


# ---------------------------------------------------------------------------------------
# evals: reading stored evaluations
# ---------------------------------------------------------------------------------------
def _pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def cmd_evals_list(args) -> int:
    rows = list_evals(open_store(), args.dataset)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("No evaluations yet: run `python -m dpo_core eval --model SPEC --dataset NAME`.")
        return 0
    _table([[f"#{r['id']}", r["model"], r["benchmark"], r["method"], _pct(r.get("accuracy")),
             f"n={r.get('n', '')}"] for r in rows])
    return 0


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cmd_evals_show(args) -> int:
    details = eval_details(open_store(), args.eval_id)
    if args.json:
        print_json(details)
        return 0
    m = details["metrics"]
    print(f"eval #{details['id']}: {details['model']} on {details['benchmark']}, "
          f"{details['method']}")
    if m.get("accuracy") is not None:
        print(f"  accuracy {m['accuracy']:.1%} [{_pct(m.get('ci_low'))}, {_pct(m.get('ci_high'))}]"
              f" n={m.get('n')}" + (f", mean margin {m['mean_margin']:+.4f}"
                                    if m.get("mean_margin") is not None else ""))
    for key in ("files", "wins", "ties", "losses"):
        if key in m:
            print(f"  {key}: {m[key]}")
    shown = details["results"][:max(0, args.pairs)]
    for r in shown:
        mark = "ok " if r["correct"] else "no " if r["correct"] is not None else "-  "
        scores = ("" if r["chosen_score"] is None else
                  f"chosen {r['chosen_score']:+.4f} rejected {r['rejected_score']:+.4f}")
        print(f"  {mark} pair {r['pair_id'] if r['pair_id'] is not None else r['item']}: {scores}")
    if len(details["results"]) > len(shown):
        print(f"  ... {len(details['results']) - len(shown)} more (--pairs N, or --json)")
    return 0


def cmd_evals_compare(args) -> int:
    rows = compare_evals(open_store(), args.eval_ids)
    if args.json:
        print_json(rows)
        return 0
    _table([[f"#{r['eval_id']}", r["model"], r["benchmark"], r["method"], _pct(r["accuracy"]),
             f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]", f"n={r['n']}"] for r in rows])
    return 0


def cmd_evals_flips(args) -> int:
    result = flip_analysis(open_store(), args.baseline, args.tuned)
    if args.out:
        rows = [{"flip": kind, **row} for kind in ("fixed", "broken") for row in result[kind]]
        fields = ["flip", "pair_id", "item", "prompt", "chosen", "rejected", "baseline_chosen",
                  "baseline_rejected", "tuned_chosen", "tuned_rejected"]
        with Path(args.out).open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    if args.json:
        print_json(result)
        return 0
    print(f"{result['compared']} pairs in both: {len(result['fixed'])} fixed (baseline wrong, "
          f"tuned right), {len(result['broken'])} broken (the reverse)")
    for kind in ("fixed", "broken"):
        for row in result[kind][:max(0, args.limit)]:
            text = (row.get("prompt") or row.get("item") or "").replace("\n", " ")[:60]
            print(f"  {kind:6s} pair {row['pair_id']}: {text!r} chosen {row.get('chosen', '')[:40]!r}")
    if args.out:
        print(f"All flips written to {args.out}.")
    return 0
