"""`eval` (accuracy of a model on pairs, a suite or a file, with an interval) and `evals`
(stored evaluations: list, show, compare, flips)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError
from ..evaluation.evaluate import (
    run_evaluation,
    run_file_evaluation,
    run_suite_evaluation,
    run_win_rate,
)
from ..evaluation.job import start_evaluation
from ..evaluation.judges import parse_judge
from ..evaluation.results import (
    PROTOCOLS,
    compare_evals,
    eval_details,
    flip_analysis,
    flips_csv,
    list_evals,
    paired_comparison,
)
from ..evaluation.scoring import METHODS, SCOPES
from ..evaluation.suites import DEFAULT_SUITE_METHOD, DEFAULT_SUITE_PROTOCOL, SUITE_PROTOCOLS
from ..store import open_store
from ..training.runs import get_run
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
                   help="mean-logp (default; sum-logp for --suite), sum-logp or implicit-reward; "
                        "repeat for several")
    p.add_argument("--scope", choices=SCOPES, default="reply",
                   help="score the reply tokens only (default) or the whole text")
    p.add_argument("--suite", metavar="FOLDER",
                   help="a folder of .txt files alternating good/bad sentences (BLiMP layout)")
    p.add_argument("--protocol", choices=list(SUITE_PROTOCOLS), default=DEFAULT_SUITE_PROTOCOL,
                   help="with --suite: whole-sentence (default: every token after a BOS/EOS "
                        "prefix, as lm-evaluation-harness) or after-first-token (the old "
                        "scoring, which never scores a sentence's first token)")
    p.add_argument("--pairs-file", metavar="JSON",
                   help="a TRL JSON file of {prompt, chosen, rejected} (e.g. HellaSwag noise)")
    p.add_argument("--as-choices", action="store_true",
                   help="with --pairs-file: score HellaSwag-layout prompts as multiple choice")
    w = p.add_argument_group("win rate (--win-rate)")
    w.add_argument("--win-rate", action="store_true",
                   help="both models answer the dataset's prompts; a judge picks the better "
                        "answer (ties count half); prints the win rate and the "
                        "length-controlled win rate")
    w.add_argument("--judge", default="lexicon", metavar="JUDGE",
                   help="lexicon (offline, default), reward:SPEC (a reward model) or llm:SPEC "
                        "(a causal LM asked in both orders)")
    w.add_argument("--judge-prompt", metavar="TEXT",
                   help="the llm judge's prompt, with {prompt}, {a} and {b}")
    w.add_argument("--baseline", metavar="SPEC", help="the model to beat (default: the run's base)")
    w.add_argument("--prompts", type=int, default=8, help="distinct prompts (default 8)")
    w.add_argument("--samples", type=int, default=3,
                   help="answers per prompt and model, seeds seed..seed+N-1 (default 3)")
    w.add_argument("--max-new-tokens", type=int, default=32, help="answer length (default 32)")
    p.add_argument("--limit", type=int, help="score only the first N pairs (per file for --suite)")
    p.add_argument("--batch-size", type=int, default=16, help="texts per forward pass")
    p.add_argument("--beta", type=float, help="implicit-reward beta (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quiet", action="store_true",
                   help="print only the stored evaluation id(s), one per line (for scripts: "
                        "BASE=$(python -m dpo_core eval ... --quiet))")
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
    q = verbs.add_parser("paired", help="tuned vs baseline on the same pairs: the accuracy "
                                        "difference with a paired interval, and McNemar's test")
    q.add_argument("baseline", type=int, metavar="BASELINE_ID")
    q.add_argument("tuned", type=int, metavar="TUNED_ID")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_evals_paired)


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
    norm = "" if summary.get("acc_norm") is None else (
        f", acc_norm {summary['acc_norm']:.1%} [{summary['acc_norm_ci_low']:.1%}, "
        f"{summary['acc_norm_ci_high']:.1%}]")
    return (f"{summary['model']} on {what}: {summary['method']} accuracy "
            f"{summary['accuracy']:.1%} [{summary['ci_low']:.1%}, {summary['ci_high']:.1%}] "
            f"n={summary['n']}{norm}{shown} · protocol {summary.get('protocol', '?')} "
            f"(eval #{summary['eval_id']})")


def _win_rate(store, args) -> int:
    if not args.dataset:
        raise ConfigError("--win-rate needs --dataset NAME: its prompts are answered.",
                          "Pass the dataset whose prompts both models answer, e.g. --dataset "
                          "childes --split eval.")
    split = None if args.split == "all" else args.split
    if args.detach:
        kind, spec = parse_judge(args.judge)
        baseline = args.baseline or _base_of(store, args.model)
        job_id = start_evaluation(store, [baseline, args.model], args.dataset, split, [],
                                  win_rate={"judge": kind, "judge_model": spec or "",
                                            "judge_template": args.judge_prompt or "",
                                            "prompts": args.prompts, "samples": args.samples,
                                            "max_new_tokens": args.max_new_tokens})
        if args.json:
            print_json({"job": job_id})
        else:
            print(job_id)
        return 0
    result = run_win_rate(store, args.model, args.baseline, args.dataset, split, args.judge,
                          prompts=args.prompts, samples=args.samples,
                          max_new_tokens=args.max_new_tokens, judge_template=args.judge_prompt,
                          progress=_progress(args.json or args.quiet))
    r = result
    return _emit(args, result, [r["eval_id"]], [
        f"{r['model']} vs {r['baseline']} on {args.dataset}/{args.split}, judge {r['judge']}: "
        f"win rate {r['win_rate']:.1%} [{r['ci_low']:.1%}, {r['ci_high']:.1%}] ({r['wins']} "
        f"wins, {r['ties']} ties, {r['losses']} losses; n={r['n']}: {r['prompts']} prompts x "
        f"{r['samples']} samples) (eval #{r['eval_id']})",
        f"  length-controlled win rate {r['lc_win_rate']:.1%} [{r['lc_ci_low']:.1%}, "
        f"{r['lc_ci_high']:.1%}]: mean answer length {r['mean_length_tuned']:.0f} vs "
        f"{r['mean_length_baseline']:.0f} characters"])


def _base_of(store, spec: str) -> str:
    """The base model a run was trained on (the default baseline of a win rate)."""
    base = get_run(store, spec[4:])["config"].get("model") if spec.startswith("run:") else None
    if not base:
        raise ConfigError(f"{spec} is not a fine-tuned run, so it has no base to compare with.",
                          "Pass --baseline SPEC.")
    return base


def _suite_method(args) -> str:
    method = (args.method or [DEFAULT_SUITE_METHOD])[0]
    if method == "implicit-reward":
        raise ConfigError("A suite scores single sentences; implicit-reward needs pairs.",
                          "Use --method mean-logp or sum-logp with --suite.")
    return method


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
    if args.suite:
        extra |= {"suite_method": _suite_method(args), "suite_protocol": args.protocol}
    job_id = start_evaluation(store, [args.model], args.dataset, split, methods,
                              scope=args.scope, limit=args.limit, batch_size=args.batch_size,
                              suite=args.suite, suite_limit=args.limit, **extra)
    if args.json:
        print_json({"job": job_id})
    else:
        print(job_id)
    return 0


def _emit(args, payload, eval_ids: list[int], lines: list[str]) -> int:
    """--json: the payload; --quiet: the stored evaluation ids; else the readable lines."""
    if args.json:
        print_json(payload)
    else:
        print("\n".join(str(i) for i in eval_ids) if args.quiet else "\n".join(lines))
    return 0


def cmd_eval(args) -> int:
    store = open_store()
    if args.win_rate:
        return _win_rate(store, args)
    if args.detach:
        return _detach(store, args)
    progress = _progress(args.json or args.quiet)
    if args.suite:
        result = run_suite_evaluation(store, args.model, args.suite, _suite_method(args),
                                      args.limit, args.batch_size, progress=progress,
                                      protocol=args.protocol)
        lines = [f"  {name:55s} {row['accuracy']:6.1%} [{row['ci_low']:.1%}, "
                 f"{row['ci_high']:.1%}]  n={row['n']}" for name, row in result["files"].items()]
        return _emit(args, result, [result["eval_id"]], [*lines, _line(result, args.suite)])
    if args.pairs_file:
        method = (args.method or ["mean-logp"])[0]
        result = run_file_evaluation(store, args.model, args.pairs_file, args.as_choices, method,
                                     args.limit, args.batch_size, progress=progress)
        return _emit(args, result, [result["eval_id"]], [_line(result, args.pairs_file)])
    if not args.dataset:
        raise ConfigError("eval needs --dataset NAME (or --suite FOLDER).",
                          "Pass the dataset to score, e.g. --dataset childes --split eval.")
    split = None if args.split == "all" else args.split
    summaries = run_evaluation(store, args.model, args.dataset, split, args.method or ["mean-logp"],
                               args.scope, args.limit, args.batch_size, args.beta,
                               progress=progress)
    return _emit(args, summaries, [s["eval_id"] for s in summaries],
                 [_line(s, f"{args.dataset}/{args.split}") for s in summaries])


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
    _table([[f"#{r['id']}", r["model"], r["benchmark"], r["method"], r["protocol"],
             _pct(r.get("accuracy")), f"n={r.get('n', '')}"] for r in rows])
    return 0


def _table(rows: list[list[str]]) -> None:
    width = max(len(row) for row in rows)
    rows = [[*row, *[""] * (width - len(row))] for row in rows]
    widths = [max(len(str(row[i])) for row in rows) for i in range(width)]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cmd_evals_show(args) -> int:
    details = eval_details(open_store(), args.eval_id)
    if args.json:
        print_json(details)
        return 0
    m = details["metrics"]
    print(f"eval #{details['id']}: {details['model']} on {details['benchmark']}, "
          f"{details['method']} (protocol: {details['protocol']}, "
          f"{PROTOCOLS.get(details['protocol'], '')})")
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
    _table([[f"#{r['eval_id']}", r["model"], r["benchmark"], r["method"], r["protocol"],
             _pct(r["accuracy"]), f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]",
             f"n={r['n']}"] + ([f"acc_norm {_pct(r['acc_norm'])}"] if r["acc_norm"] is not None
                               else []) for r in rows])
    return 0


def cmd_evals_flips(args) -> int:
    result = flip_analysis(open_store(), args.baseline, args.tuned)
    if args.out:  # formula-like cells guarded, as `data export --format csv` guards them
        Path(args.out).write_text(flips_csv(result), encoding="utf-8", newline="")
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


def cmd_evals_paired(args) -> int:
    result = paired_comparison(open_store(), args.baseline, args.tuned)
    if args.json:
        print_json(result)
        return 0
    base, tuned = result["baseline"], result["tuned"]
    print(f"#{tuned['eval_id']} {tuned['model']} minus #{base['eval_id']} {base['model']} on "
          f"the {result['n']} pairs both scored: {result['difference']:+.1%} "
          f"[{result['ci_low']:+.1%}, {result['ci_high']:+.1%}] (paired bootstrap 95%)")
    print(f"  McNemar exact p = {result['p_value']:.3g}: {result['only_b']} fixed (baseline "
          f"wrong, tuned right), {result['only_a']} broken (the reverse)")
    if result["warning"]:
        print(f"note: {result['warning']}")
    return 0
