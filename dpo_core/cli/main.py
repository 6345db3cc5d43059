"""The command line: `python -m dpo_core <verb>`. Errors print one clear line (a JSON object
{"error", "fix", "field", "kind"} on stdout with --json) and exit 2.

Each verb group registers its verbs through `register(subparsers)` in its own module, so this
file stays a table of contents.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import DPOLabError
from . import (
    annotate,
    compare,
    data,
    doctor,
    evaluate,
    export_space,
    generate,
    import_log,
    jobs,
    sweep,
    targets,
    train,
)
from .output import print_json

VERB_GROUPS = (doctor, data, train, import_log, generate, jobs, evaluate, compare, export_space,
               sweep, targets, annotate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpo_core",
        description="DPO Lab: import preference pairs, train DPO runs, evaluate, chat, publish.")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for group in VERB_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        _seed_demo_data()
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return code
    except DPOLabError as exc:
        if getattr(args, "json", False):  # scripts read errors the way they read answers
            print_json({"error": exc.message, "fix": exc.fix, "field": exc.field,
                        "kind": type(exc).__name__})
        else:
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `runs list | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a writer stopped by SIGPIPE


def _seed_demo_data() -> None:
    """A fresh workspace starts with the demo datasets, from the terminal as in the app."""
    from ..data.demo_datasets import seed_workspace
    from ..store import open_store

    seed_workspace(open_store())
