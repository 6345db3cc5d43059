"""The public Space verbs: `export-space RUN_ID --out DIR` (a finished run as a ready Gradio
Space folder, optionally pushed) and `import-space-votes FILE --dataset NAME` (the votes it
collected, as a dataset flagged `unreviewed`)."""

from __future__ import annotations

from ..chat.votes import UNREVIEWED, import_space_votes
from ..publish.space_export import export_space, push_space
from ..store import open_store
from .output import print_json


def register(sub) -> None:
    p = sub.add_parser("export-space", help="write a run as a Hugging Face Space folder",
                       description="Write a Gradio Space folder (side-by-side demo with "
                                   "votes) for a completed run; optionally push it.")
    p.add_argument("run_id", metavar="RUN_ID", help="the run to publish (must be completed)")
    p.add_argument("--out", required=True, help="folder to write (new or empty)")
    p.add_argument("--push", metavar="REPO", default=None,
                   help="also upload to this Space (user/name); needs HF_TOKEN and network")
    p.add_argument("--base", default=None,
                   help="where the Space gets the base model: a hub id or folder "
                        "(default: copy local bases, hub id for the builtin default)")
    p.add_argument("--copy-base", action="store_true",
                   help="copy the base model's weights into the folder (exact weights, larger)")
    p.add_argument("--title", default=None, help="the Space's title")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_export_space)

    p = sub.add_parser("import-space-votes", help="a Space's votes as a dataset flagged unreviewed",
                       description="Import the votes.jsonl an exported Space wrote as a new "
                                   "dataset. Strangers voted: every pair is flagged "
                                   f"'{UNREVIEWED}' (source 'space') for review before training;"
                                   " identical and repeated answers are left out.")
    p.add_argument("file", metavar="FILE", help="the Space's votes.jsonl")
    p.add_argument("--dataset", required=True, help="name of the new dataset")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_import_space_votes)


def cmd_export_space(args) -> int:
    result = export_space(None, args.run_id, args.out, base=args.base,
                          copy_base=True if args.copy_base else None, title=args.title,
                          overwrite=args.force).to_dict()
    if args.push:
        result["url"] = push_space(result["out_dir"], args.push)
    if args.json:
        print_json(result)
    else:
        print(f"Space folder written to {result['out_dir']} ({len(result['files'])} files); "
              f"run it with `python app.py` there.")
        if result["note"]:
            print(result["note"])
        if result.get("url"):
            print(f"Pushed: {result['url']}")
    return 0


def cmd_import_space_votes(args) -> int:
    result = import_space_votes(open_store(), args.file, args.dataset)
    if args.json:
        print_json(vars(result))
        return 0
    skipped = ", ".join(f"{n} {why}" for why, n in result.skipped.items())
    print(f"Imported {result.pairs} pairs into '{result.dataset}', each flagged '{UNREVIEWED}'"
          + (f" (left out: {skipped})" if skipped else "") + ". Review them in the Data page "
          "(filter by the flag) before training on them.")
    return 0
