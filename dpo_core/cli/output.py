"""What every verb prints: JSON for `--json`, the same shape everywhere."""

from __future__ import annotations

import json


def print_json(value) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def add_verb(verbs, name: str, help: str, func):
    """A sub-verb (`data list`, `runs show`, ...) with the `--json` every verb takes."""
    p = verbs.add_parser(name, help=help, description=help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=func)
    return p
