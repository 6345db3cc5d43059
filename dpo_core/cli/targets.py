"""`python -m dpo_core targets list|add|remove|import|export`: the cluster targets runs can be
sent to (`train CONFIG --target NAME`); the Settings page edits the same list."""

from __future__ import annotations

import dataclasses

from ..cluster.targets import (
    SlurmTarget,
    dump_targets,
    list_targets,
    load_targets,
    remove_target,
    save_target,
)
from ..fields import build, field_help
from ..store import open_store
from .output import add_verb, print_json

LISTS = ("extra_sbatch", "shared_paths")


def register(sub) -> None:
    targets = sub.add_parser("targets", help="cluster targets (Slurm) runs can be sent to")
    verbs = targets.add_subparsers(dest="targets_verb", metavar="<command>")
    targets.set_defaults(func=lambda args: targets.print_help() or 0)
    add_verb(verbs, "list", "list the cluster targets", cmd_list)
    p = add_verb(verbs, "add", "add a target, or replace the one of that name", cmd_add)
    helps = field_help(SlurmTarget)
    for f in dataclasses.fields(SlurmTarget):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "name":
            p.add_argument("name", help=helps["name"])
        elif f.name in LISTS:
            p.add_argument(flag, dest=f.name, action="append", help=helps[f.name] + " Repeat.")
        else:
            p.add_argument(flag, dest=f.name, help=helps[f.name])
    add_verb(verbs, "remove", "remove a target", cmd_remove).add_argument("name")
    add_verb(verbs, "import", "add the targets of a YAML file", cmd_import).add_argument("path")
    add_verb(verbs, "export", "print the targets as YAML", cmd_export)


def cmd_list(args) -> int:
    targets = list_targets(open_store())
    if args.json:
        print_json([t.to_dict() for t in targets])
        return 0
    print("local  this machine (the default)")
    for t in targets:
        gpus = f" gpu:{t.gpus_per_node}" if t.gpus_per_node else ""
        print(f"{t.name}  slurm partition={t.partition or '(default)'} time={t.time_limit} "
              f"nodes={t.nodes}{gpus}")
    return 0


def cmd_add(args) -> int:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SlurmTarget)
             if getattr(args, f.name, None) is not None}
    target = build(SlurmTarget, given, "target field")
    save_target(open_store(), target)
    print_json(target.to_dict()) if args.json else print(f"saved target {target.name}")
    return 0


def cmd_remove(args) -> int:
    remove_target(open_store(), args.name)
    print_json({"removed": args.name}) if args.json else print(f"removed target {args.name}")
    return 0


def cmd_import(args) -> int:
    store = open_store()
    targets = load_targets(args.path)
    for target in targets:
        save_target(store, target)
    names = [t.name for t in targets]
    print_json({"saved": names}) if args.json else print("saved " + ", ".join(names))
    return 0


def cmd_export(args) -> int:
    store = open_store()
    if args.json:
        print_json([t.to_dict() for t in list_targets(store)])
    else:
        print(dump_targets(store), end="")
    return 0

