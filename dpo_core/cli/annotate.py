"""`python -m dpo_core annotate ...`: team annotation from the terminal. Accounts (add, list,
disable; `users` is the same group), tasks (create, list, show or status, close), judging as a named annotator, agreement with the
disagreement queue, the owner's decisions and the consensus dataset.

Whoever runs the command line holds the workspace's files, so it acts as the lab's owner
(`accounts.LOCAL_OWNER`); `judge --as NAME` records judgments for that annotator account."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from ..annotation.accounts import (
    LOCAL_OWNER,
    ROLES,
    add_account,
    disable_account,
    get_account,
    list_accounts,
)
from ..annotation.agreement import adjudicate, disagreements, task_agreement
from ..annotation.consensus import consensus_dataset
from ..annotation.judgments import CHOICES, LABELS, STRENGTHS, judge, next_item, progress
from ..annotation.tasks import close_task, create_task, get_task, list_tasks
from ..data.checks import CHECKS
from ..store import open_store
from .output import add_verb, print_json


def register(sub) -> None:
    annotate = sub.add_parser("annotate", help="team annotation: accounts, tasks, agreement")
    groups = annotate.add_subparsers(dest="annotate_verb", metavar="<command>")
    annotate.set_defaults(func=lambda args: annotate.print_help() or 0)
    _register_accounts(groups)
    _register_task(groups)
    p = add_verb(groups, "judge", "show an annotator's next pair, or save a judgment of it",
                 cmd_judge)
    p.add_argument("task")
    p.add_argument("--as", dest="annotator", required=True, help="the annotator account")
    p.add_argument("--pair", type=int, help="the pair id the queue showed")
    p.add_argument("--choice", choices=CHOICES, help="A, B, tie or both_bad (as shown)")
    p.add_argument("--strength", choices=STRENGTHS)
    p.add_argument("--reason", default="")
    p.add_argument("--edit", help="a better version of the better reply")
    add_verb(groups, "agreement", "agreement figures and the disagreement queue",
             cmd_agreement).add_argument("task")
    p = add_verb(groups, "adjudicate", "the owner's decision for a pair", cmd_adjudicate)
    p.add_argument("task")
    p.add_argument("pair", type=int)
    p.add_argument("label", choices=LABELS)
    p = add_verb(groups, "consensus", "write the consensus as a new dataset", cmd_consensus)
    p.add_argument("task")
    p.add_argument("--into", help="the new dataset's name (default DATASET-TASK)")
    p.add_argument("--ties", choices=("drop", "keep"), default="drop")
    p.add_argument("--both-bad", choices=("drop", "keep"), default="drop")


def _register_accounts(groups) -> None:
    accounts = groups.add_parser("accounts", aliases=["users"],
                                 help="who may log in, with which role")
    verbs = accounts.add_subparsers(dest="accounts_verb", metavar="<command>")
    accounts.set_defaults(func=lambda args: accounts.print_help() or 0)
    p = add_verb(verbs, "add", "add an account (the first must be an owner)", cmd_accounts_add)
    p.add_argument("name")
    p.add_argument("--role", choices=ROLES, default="annotator")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input instead of asking")
    p.add_argument("--oidc", action="store_true",
                   help="NAME is the e-mail address the lab's OIDC login (secrets.toml [auth]) "
                        "signs in; the account has no password")
    add_verb(verbs, "list", "list the accounts", cmd_accounts_list)
    add_verb(verbs, "disable", "disable an account (it cannot log in)",
             cmd_accounts_disable).add_argument("name")


def _register_task(groups) -> None:
    task = groups.add_parser("task", help="annotation tasks")
    verbs = task.add_subparsers(dest="task_verb", metavar="<command>")
    task.set_defaults(func=lambda args: task.print_help() or 0)
    p = add_verb(verbs, "create", "create a task over a dataset", cmd_task_create)
    p.add_argument("name")
    p.add_argument("--dataset", required=True)
    p.add_argument("--k", type=int, default=2, help="judgments per pair (1-5)")
    p.add_argument("--guidelines", help="a markdown file shown above every pair")
    p.add_argument("--check", choices=CHECKS, help="only the pairs failing this check")
    p.add_argument("--strength", action="store_true", help="ask clearly / slightly")
    p.add_argument("--reason", action="store_true", help="ask for a free-text reason")
    p.add_argument("--edit", action="store_true", help="allow an edit of the better reply")
    add_verb(verbs, "list", "list the tasks", cmd_task_list)
    for verb in ("show", "status"):
        add_verb(verbs, verb, "a task and its progress", cmd_task_show).add_argument("name")
    add_verb(verbs, "close", "close a task", cmd_task_close).add_argument("name")


def _say(args, value, text: str) -> int:
    print_json(value) if args.json else print(text)
    return 0


def cmd_accounts_add(args) -> int:
    password = (None if args.oidc else sys.stdin.readline().rstrip("\n")
                if args.password_stdin else getpass.getpass(f"Password for {args.name}: "))
    account = add_account(open_store(), LOCAL_OWNER, args.name, password, args.role,
                          oidc=args.oidc)
    return _say(args, account.__dict__, f"added {account.name} ({account.role})")


def cmd_accounts_list(args) -> int:
    found = list_accounts(open_store())
    return _say(args, [a.__dict__ for a in found], "\n".join(
        f"{a.name}  {a.role}{'  (OIDC sign-in)' if a.oidc else ''}"
        f"{'  disabled' if a.disabled else ''}" for a in found)
        or "no accounts: a single-user lab")


def cmd_accounts_disable(args) -> int:
    account = disable_account(open_store(), LOCAL_OWNER, args.name)
    return _say(args, account.__dict__, f"disabled {account.name}")


def cmd_task_create(args) -> int:
    guidelines = Path(args.guidelines).read_text(encoding="utf-8") if args.guidelines else ""
    t = create_task(open_store(), LOCAL_OWNER, args.name, args.dataset, k=args.k,
                    guidelines=guidelines, check=args.check, ask_strength=args.strength,
                    ask_reason=args.reason, allow_edit=args.edit)
    return _say(args, t.to_dict(), f"created task {t.name}: {t.pairs} pairs, k={t.k}")


def cmd_task_list(args) -> int:
    found = list_tasks(open_store())
    return _say(args, [t.to_dict() for t in found], "\n".join(
        f"{t.name}  {t.dataset_name}  {t.pairs} pairs  k={t.k}  {t.status}" for t in found)
        or "no tasks")


def cmd_task_show(args) -> int:
    store = open_store()
    t = get_task(store, args.name)
    done = progress(store, LOCAL_OWNER, t.id)
    lines = [f"{t.name} ({t.status}) on {t.dataset_name}: {t.pairs} pairs, k={t.k}",
             f"complete: {done['complete']}/{t.pairs}, judgments: {done['judgments']}",
             *(f"  {name}: {n}" for name, n in done["per_annotator"].items())]
    return _say(args, {**t.to_dict(), "progress": done}, "\n".join(lines))


def cmd_task_close(args) -> int:
    t = close_task(open_store(), LOCAL_OWNER, args.name)
    return _say(args, t.to_dict(), f"closed {t.name}")


def cmd_judge(args) -> int:
    store = open_store()
    who = get_account(store, args.annotator)
    if args.choice is None:
        item = next_item(store, who, args.task)
        if item is None:
            return _say(args, None, f"nothing left for {who.name} in {args.task}")
        return _say(args, item.__dict__, f"pair {item.pair_id} ({item.done}/{item.total} done)\n"
                    f"prompt: {item.prompt}\nA: {item.a}\nB: {item.b}")
    if args.pair is None:
        print("error: --choice needs --pair (the id the queue showed)", file=sys.stderr)
        return 2
    saved = judge(store, who, args.task, args.pair, args.choice, strength=args.strength,
                  reason=args.reason, edit=args.edit)
    return _say(args, saved, f"saved {who.name}'s judgment of pair {args.pair}")


def cmd_agreement(args) -> int:
    store = open_store()
    got = task_agreement(store, LOCAL_OWNER, args.task)
    queue = disagreements(store, LOCAL_OWNER, args.task)
    if args.json:
        print_json({**got, "disagreements": queue})
        return 0
    print(f"{got['task']}: {got['pairs_shared']} pairs judged by 2+, raw agreement "
          f"{got['raw']}, Fleiss' kappa {got['fleiss_kappa']}, Krippendorff's alpha "
          f"{got['krippendorff_alpha']}")
    for p in got["pairwise"]:
        print(f"  {' / '.join(p['annotators'])}: n={p['n']} raw={p['raw']} "
              f"Cohen's kappa={p['cohen_kappa']}")
    for a in got["annotators"]:
        print(f"  {a['annotator']}: {a['judgments']} judgments, with the majority "
              f"{a['with_majority']} (n={a['n']})")
    print(f"disagreements to adjudicate: {len(queue)}")
    for q in queue:
        print(f"  pair {q['pair_id']}: " + ", ".join(
            f"{j['annotator']}={j['label']}" for j in q["judgments"]))
    return 0


def cmd_adjudicate(args) -> int:
    saved = adjudicate(open_store(), LOCAL_OWNER, args.task, args.pair, args.label)
    return _say(args, saved, f"pair {args.pair}: {args.label}")


def cmd_consensus(args) -> int:
    ds = consensus_dataset(open_store(), LOCAL_OWNER, args.task, into=args.into,
                           ties=args.ties, both_bad=args.both_bad)
    return _say(args, {"dataset": ds.name, "id": ds.id, "recipe": ds.recipe},
                f"wrote {ds.name}: {ds.recipe['kept']} pairs ({ds.recipe['swapped']} swapped, "
                f"{ds.recipe['edited']} edited; left out {ds.recipe['dropped'] or 'none'})")
