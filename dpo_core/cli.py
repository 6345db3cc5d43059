"""The command line: `python -m dpo_core <verb>`. Errors print one clear line and exit 2.

Each area registers its verbs through a `register(subparsers)` function in its own cli module,
so this file stays a table of contents.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from .errors import DPOLabError

# Modules that add verbs; a module that is missing is skipped (areas land one by one).
AREAS = (
    "dpo_core.core_cli",
    "dpo_core.data.cli",
    "dpo_core.training.cli",
    "dpo_core.training.external",
    "dpo_core.data.generate_cli",
    "dpo_core.evaluation_cli",
    "dpo_core.generation_cli",
    "dpo_core.demo.cli",
    "dpo_core.sweeps_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpo_core",
        description="DPO Lab: import preference pairs, train DPO runs, evaluate, chat, publish.")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for name in AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue
            raise
        module.register(sub)
    return parser


def print_json(value) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _seed_demo_data() -> None:
    """A fresh workspace starts with the demo datasets, from the terminal as in the app."""
    from .demo_data import seed_workspace
    from .store import open_store

    seed_workspace(open_store())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        _seed_demo_data()
        return int(args.func(args) or 0)
    except DPOLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
