"""`python -m dpo_core data ...`: import, transcripts, list, show, search, export, push, split,
noise, dedupe, filter, sample, checks, edit, undo, history, delete.

Longer than 400 lines because it is the whole data verb group (one module per verb group); each
verb is a short parser block and a short command function.
"""

from __future__ import annotations

import sys

from ..data import checks, edits, exporter, importer, transforms
from ..data.browse import SEARCH_FIELDS, count_matches, highlight, page
from ..data.datasets import count_pairs, delete_dataset, get_dataset, lineage, list_datasets
from ..data.rendering import preview_pairs
from ..data.transcripts import CLEAN_UPS, import_transcripts
from ..errors import ConfigError
from ..formats import plain_text
from ..jobs.rows import list_rows
from ..models import DEFAULT_SPEC, TINY_SPEC, load_tokenizer, model_state, resolve_path
from ..store import open_store
from ..workspace import get_workspace
from .output import add_verb, print_json


def register(sub) -> None:
    data = sub.add_parser("data", help="import, inspect, transform and export preference pairs")
    verbs = data.add_subparsers(dest="data_verb", metavar="<command>")
    data.set_defaults(func=lambda args: data.print_help() or 0)

    p = add_verb(verbs, "import", "import a file or hub dataset as a new dataset", cmd_import)
    p.add_argument("path", help="file (.csv .json .jsonl .parquet) or hub id")
    p.add_argument("--dataset", required=True, help="name of the new dataset")
    p.add_argument("--format", default="auto", choices=importer.FORMATS)
    p.add_argument("--map", help="prompt=COL,chosen=COL,rejected=COL")
    p.add_argument("--split", default="train", help="split for the rows (and the hub split)")
    p.add_argument("--choices", default="each", choices=("each", "sample"),
                   help="multiple choice: right vs each wrong, or one sampled wrong")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoding", help="the file's text encoding (e.g. cp1252, latin-1, utf-16); "
                   "default: UTF-8, or what a byte-order mark says")
    p.add_argument("--bad-rows", default="refuse", choices=importer.BAD_ROWS,
                   help="refuse: any bad row refuses the file (default); skip: import the good "
                   "rows and write a report of the bad ones")
    p.add_argument("--report", help="where the bad-rows report goes (CSV; default: the "
                   "workspace's exports/<dataset>.bad-rows.csv)")

    add_verb(verbs, "list", "list datasets", cmd_list)
    p = add_verb(verbs, "show", "show a dataset, its lineage and its first pairs", cmd_show)
    p.add_argument("name")
    p.add_argument("--rendered", action="store_true",
                   help="show the exact text each pair becomes for a model (template, tags, "
                   "truncation marks)")
    p.add_argument("--model", help="model spec for --rendered (default: the default model if "
                   "prepared, else builtin:tiny)")
    p.add_argument("--pair", type=int, action="append", help="pair id to show (repeatable)")
    p.add_argument("--limit", type=int, default=3, help="pairs to show (default 3)")
    p.add_argument("--max-length", type=int, default=512, help="a run's max_length")
    p.add_argument("--max-prompt-length", type=int, default=256,
                   help="a run's max_prompt_length (0 = off)")

    p = add_verb(verbs, "delete", "delete a dataset, its pairs and their edit history", cmd_delete)
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="really delete (without it: what would go)")

    p = add_verb(verbs, "export", "write a dataset to a file", cmd_export)
    p.add_argument("name")
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=exporter.EXPORT_FORMATS)
    p.add_argument("--split")

    p = add_verb(verbs, "push", "push a dataset to the Hugging Face hub (needs HF_TOKEN)", cmd_push)
    p.add_argument("name")
    p.add_argument("--repo", required=True, help="hub dataset repo, USER/NAME")
    p.add_argument("--public", action="store_true", help="make the repo public (default private)")

    p = add_verb(verbs, "split", "derive a train/eval split", cmd_split)
    p.add_argument("name")
    p.add_argument("--eval-size", required=True,
                   help="a count (300) or a fraction below 1 (0.1)")
    p.add_argument("--first", action="store_true", help="first rows train, the rest eval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--into")

    p = add_verb(verbs, "noise", "derive a copy with flipped labels", cmd_noise)
    p.add_argument("name")
    p.add_argument("--flip", type=float, required=True,
                   help="fraction of the train pairs to flip")
    p.add_argument("--all-splits", action="store_true",
                   help="flip eval pairs too (default: only train; evaluation stays clean)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--into", required=True)

    p = add_verb(verbs, "checks", "run data checks; with --check, the pairs failing one",
                 cmd_checks)
    p.add_argument("name")
    p.add_argument("--check", choices=(*checks.CHECKS, "truncated"),
                   help="list the pairs failing this check")
    p.add_argument("--reference", help="dataset whose speaker tags are expected")
    p.add_argument("--model", help="truncated: the model whose template and tokenizer render "
                   "the pairs (default: the default model if prepared, else builtin:tiny)")
    p.add_argument("--max-length", type=int, default=512, help="truncated: a run's max_length")
    p.add_argument("--max-prompt-length", type=int, default=0,
                   help="truncated: a run's max_prompt_length (0 = off)")
    p.add_argument("--limit", type=int, default=10, help="pairs printed with --check")
    _register_daily(verbs)


def _register_daily(verbs) -> None:
    """Transcripts, search, derived datasets and edits."""
    p = add_verb(verbs, "transcripts", "CHAT (.cha) or text transcripts -> minimal pairs",
                 cmd_transcripts)
    p.add_argument("paths", nargs="+", help="transcript files")
    p.add_argument("--dataset", required=True, help="name of the new dataset")
    p.add_argument("--match", default="len", choices=("len", "tok"),
                   help="match the rejected reply's length in words (len) or tokens (tok)")
    p.add_argument("--model", help="tokenizer for --match tok (default builtin:tiny)")
    p.add_argument("--no-overlap", action="store_true",
                   help="rejected shares no word with the adult turn")
    p.add_argument("--child", default="CHI", help="the child's speaker code")
    p.add_argument("--clean", action="append", default=[], metavar="CLEAN_UP",
                   help="CHAT clean-up, repeatable: " + ", ".join(CLEAN_UPS))
    p.add_argument("--seed", type=int, default=0)

    p = add_verb(verbs, "search", "find pairs: words, \"a phrase\", prefix*", cmd_search)
    p.add_argument("name")
    p.add_argument("query")
    p.add_argument("--in", dest="fields", action="append", choices=SEARCH_FIELDS,
                   help="search only this field (repeatable)")
    p.add_argument("--limit", type=int, default=10)

    p = add_verb(verbs, "dedupe", "derive a copy without repeats and contradictions", cmd_dedupe)
    p.add_argument("name")
    p.add_argument("--into")
    p = add_verb(verbs, "filter", "derive a copy without (or with only) some pairs", cmd_filter)
    p.add_argument("name")
    p.add_argument("--check", choices=checks.CHECKS, help="drop the pairs failing it")
    p.add_argument("--search", help="drop the pairs matching it")
    p.add_argument("--keep", action="store_true", help="keep only the matches instead")
    p.add_argument("--into")
    p = add_verb(verbs, "sample", "derive a seeded random sample", cmd_sample)
    p.add_argument("name")
    p.add_argument("n", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--into")

    p = add_verb(verbs, "edit", "change one pair (each change is recorded and can be undone)",
                 cmd_edit)
    p.add_argument("name")
    p.add_argument("pair", type=int)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=TEXT",
                   help="prompt, chosen, rejected, split, source or note; a JSON message list "
                   "for a conversation")
    p.add_argument("--swap", action="store_true", help="exchange chosen and rejected")
    p.add_argument("--tag", help="add a tag")
    p.add_argument("--flag", help="add a flag")
    p.add_argument("--delete", action="store_true")
    p.add_argument("--restore", action="store_true")
    p.add_argument("--version", type=int, help="refuse if the pair is no longer at this version")
    p = add_verb(verbs, "undo", "undo the last edit of a dataset (or --edit ID)", cmd_undo)
    p.add_argument("name")
    p.add_argument("--edit", type=int, help="the edit id (see `data history`)")
    p = add_verb(verbs, "history", "the edits of one pair", cmd_history)
    p.add_argument("name")
    p.add_argument("pair", type=int)


def _summary(store, ds) -> dict:
    chain = lineage(store, ds.id)
    return {"id": ds.id, "name": ds.name, "pairs": count_pairs(store, ds.id),
            "train": count_pairs(store, ds.id, "train"), "eval": count_pairs(store, ds.id, "eval"),
            "parent": chain[0]["name"] if chain else None,
            "lineage": " <- ".join([ds.name, *(c["name"] + ("" if c["id"] else " (deleted)")
                                               for c in chain)]),
            "parent_id": ds.parent_id, "recipe": ds.recipe, "prompt_format": ds.prompt_format}


def _out(args, value, text: str) -> int:
    print_json(value) if args.json else print(text)
    return 0


def cmd_import(args) -> int:
    store = open_store()
    report = args.report or (get_workspace().exports / f"{args.dataset}.bad-rows.csv"
                             if args.bad_rows == "skip" else None)
    result = importer.import_pairs(store, args.path, dataset=args.dataset, format=args.format,
                                   mapping=importer.parse_mapping(args.map), split=args.split,
                                   choices=args.choices, seed=args.seed, encoding=args.encoding,
                                   bad_rows=args.bad_rows, report=report,
                                   progress=_progress if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    value = {"dataset": result.dataset.name, "id": result.dataset.id, "pairs": result.count,
             "shape": result.shape, "seconds": round(result.seconds, 3),
             "encoding": result.encoding, "skipped": result.skipped, "report": result.report}
    text = (f"imported {result.count:,} pairs ({result.shape}) into '{result.dataset.name}' in "
            f"{result.seconds:.2f}s")
    if result.skipped:
        text += f"; skipped {result.skipped:,} bad rows, listed in {result.report}"
    return _out(args, value, text)


def _progress(fraction: float, message: str) -> None:
    """Import progress on one stderr line (stdout stays the result, e.g. for --json)."""
    print(f"\r{fraction:4.0%}  {message:<40}", end="", file=sys.stderr, flush=True)


def cmd_list(args) -> int:
    rows = list_datasets(open_store())
    text = "\n".join(f"{r['id']:>4}  {r['name']:<40} {r['pairs']:>9,} pairs  train {r['train']:,}"
                     f"  eval {r['eval']:,}" for r in rows) or "(no datasets)"
    return _out(args, rows, text)


def cmd_show(args) -> int:
    store = open_store()
    ds = get_dataset(store, args.name)
    value = _summary(store, ds)
    if args.rendered:
        return _show_rendered(args, store, ds, value)
    value["first"] = [p.as_record() for p in page(store, ds.id, limit=args.limit).pairs]
    lines = [f"{k}: {v}" for k, v in value.items() if k != "first"]
    for record in value["first"]:
        lines += ["", *(f"{k}:\n{_indent(plain_text(v))}" for k, v in record.items())]
    return _out(args, value, "\n".join(lines))


def _show_rendered(args, store, ds, value: dict) -> int:
    model = args.model or (DEFAULT_SPEC if model_state(DEFAULT_SPEC)["ready"] else TINY_SPEC)
    fmt, rendered = preview_pairs(store, ds.id, model, pair_ids=args.pair, limit=args.limit,
                                  max_length=args.max_length,
                                  max_prompt_length=args.max_prompt_length)
    value.update(model=model, format=fmt.to_dict(), rendered=[r.as_dict() for r in rendered])
    lines = [f"'{ds.name}' rendered for {model} ({fmt.label}), max_length {args.max_length}, "
             f"max_prompt_length {args.max_prompt_length}"]
    for r in rendered:
        lines.append(f"\n=== pair {r.pair_id} ===")
        for side in ("prompt", "chosen", "rejected"):
            cut = getattr(r, f"{side}_cut")
            note = f", {cut} cut" if cut else ""
            lines.append(f"--- {side} ({getattr(r, f'{side}_tokens')} tokens{note}) ---")
            lines.append(r.marked.get(side, getattr(r, side)))
    return _out(args, value, "\n".join(lines))


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.split("\n"))


def cmd_delete(args) -> int:
    store = open_store()
    ds = get_dataset(store, args.name)
    pairs = count_pairs(store, ds.id)
    runs = sum(1 for r in list_rows(store, kinds=("train",)) if r["dataset_id"] == ds.id)
    kept = (f" The {runs} run(s) trained on it keep their frozen copies of its pairs."
            if runs else "")
    if not args.yes:
        raise ConfigError(f"Deleting '{ds.name}' removes its {pairs:,} pairs and their edit "
                          f"history; it cannot be undone.{kept}",
                          f"Export it first if in doubt, then run `python -m dpo_core data "
                          f"delete {ds.name} --yes`.")
    delete_dataset(store, ds.id)
    return _out(args, {"deleted": ds.name, "pairs": pairs},
                f"deleted '{ds.name}' ({pairs:,} pairs).{kept}")


def cmd_export(args) -> int:
    n = exporter.export_pairs(open_store(), args.name, args.out, args.format, args.split)
    return _out(args, {"pairs": n, "path": args.out}, f"wrote {n:,} pairs to {args.out}")


def cmd_push(args) -> int:
    url = exporter.push_dataset(open_store(), args.name, args.repo, private=not args.public)
    return _out(args, {"url": url, "repo": args.repo}, f"pushed '{args.name}' to {url}")


def cmd_split(args) -> int:
    store = open_store()
    ds = transforms.split_dataset(store, args.name, args.eval_size, seed=args.seed,
                                  first=args.first, into=args.into)
    value = _summary(store, ds)
    return _out(args, value, f"'{ds.name}': train {value['train']:,}, eval {value['eval']:,}")


def cmd_noise(args) -> int:
    store = open_store()
    ds = transforms.add_label_noise(store, args.name, args.flip, seed=args.seed, into=args.into,
                                    splits="all" if args.all_splits else "train")
    where = "pairs (all splits)" if args.all_splits else "train pairs (eval pairs left as they are)"
    return _out(args, _summary(store, ds),
                f"'{ds.name}': flipped {ds.recipe['flipped']:,} of {ds.recipe['of']:,} {where}")


def cmd_checks(args) -> int:
    store = open_store()
    ds = get_dataset(store, args.name)
    model = args.model or (DEFAULT_SPEC if model_state(DEFAULT_SPEC)["ready"] else TINY_SPEC)
    tokenizer = path = None
    if args.check == "truncated":
        path = resolve_path(model)
        tokenizer = load_tokenizer(path)
    results = checks.run_checks(store, ds.id, reference=args.reference, tokenizer=tokenizer,
                                max_tokens=args.max_length, model_path=path,
                                max_prompt_length=args.max_prompt_length, statistics=True)
    if args.check:
        return _one_check(args, store, ds, results[args.check])
    bias = checks.length_bias(store, ds.id)
    value = {name: {"count": r["count"], "ids": r["ids"][:100]} for name, r in results.items()}
    value["length_bias"] = bias
    lines = [f"{k:<22} {r['count']:>8,}" for k, r in results.items()]
    lines.append(f"length bias: chosen is the longer reply in {bias['share']:.0%} of "
                 f"{bias['pairs']:,} pairs")
    return _out(args, value, "\n".join(lines))


def _one_check(args, store, ds, result: dict) -> int:
    shown = [edits.get_pair(store, i) for i in result["ids"][:args.limit]]
    value = {"check": args.check, "count": result["count"], "ids": result["ids"],
             "pairs": [{"id": p.id, **p.as_record()} for p in shown]}
    lines = [f"{result['count']:,} pairs of '{ds.name}' fail {args.check}"
             + (f" (first {len(shown)}):" if shown else ".")]
    for p in shown:
        lines.append(f"  {p.id}: " + " | ".join(plain_text(getattr(p, k)).replace("\n", " / ")[:60]
                                                 for k in ("prompt", "chosen", "rejected")))
    return _out(args, value, "\n".join(lines))


def cmd_transcripts(args) -> int:
    tokenizer = load_tokenizer(resolve_path(args.model or TINY_SPEC)) if args.match == "tok" \
        else None
    ds, built = import_transcripts(open_store(), args.paths, dataset=args.dataset,
                                   match=args.match, overlap=not args.no_overlap,
                                   tokenizer=tokenizer, seed=args.seed, child=args.child,
                                   clean=args.clean)
    value = {"dataset": ds.name, "pairs": len(built), "dropped": built.dropped,
             "clean": ds.recipe["clean"]}
    return _out(args, value, f"made {len(built):,} pairs into '{ds.name}' ({built.dropped:,} "
                             "answered turns had no matching other reply)")


def cmd_search(args) -> int:
    store = open_store()
    found = page(store, args.name, search=args.query, fields=args.fields, limit=args.limit)
    total = count_matches(store, args.name, search=args.query, fields=args.fields)
    value = {"count": total, "pairs": [{"id": p.id, **p.as_record()} for p in found.pairs]}
    lines = [f"{total:,}{'+' if total > 1000 else ''} pairs match"]
    for p in found.pairs:
        lines.append(f"{p.id}:")
        lines += [f"  {k}: " + highlight(plain_text(getattr(p, k)), args.query, ("[", "]"))
                  for k in (args.fields or SEARCH_FIELDS)]
    return _out(args, value, "\n".join(lines))


def _derived(args, ds) -> int:
    store = open_store()
    value = _summary(store, ds)
    return _out(args, value, f"'{ds.name}' ({value['pairs']:,} pairs) from '{args.name}': "
                             + ", ".join(f"{k} {v}" for k, v in ds.recipe.items()
                                         if k not in ("op", "parent")))


def cmd_dedupe(args) -> int:
    return _derived(args, transforms.dedupe(open_store(), args.name, into=args.into))


def cmd_filter(args) -> int:
    return _derived(args, transforms.filter_dataset(open_store(), args.name, check=args.check,
                                                    search=args.search, keep=args.keep,
                                                    into=args.into))


def cmd_sample(args) -> int:
    return _derived(args, transforms.sample_dataset(open_store(), args.name, args.n,
                                                    seed=args.seed, into=args.into))


def cmd_edit(args) -> int:
    store = open_store()
    ds = get_dataset(store, args.name)
    pair = edits.get_pair(store, args.pair)
    version = args.version if args.version is not None else pair.version
    changes = dict(_parse_set(item) for item in args.sets)
    done = []
    if changes:
        pair = edits.update_pair(store, pair.id, changes, version, "cli", dataset_id=ds.id)
        done.append("set " + ", ".join(changes))
    for flag, fn, what in ((args.swap, edits.swap_pair, "swapped"),
                           (args.delete, edits.delete_pair, "deleted"),
                           (args.restore, edits.restore_pair, "restored")):
        if flag:
            pair = fn(store, pair.id, version if not done else pair.version, "cli", ds.id)
            done.append(what)
    for kind in ("tag", "flag"):
        if getattr(args, kind):
            pair = edits.mark_pair(store, pair.id, version if not done else pair.version,
                                   **{kind: getattr(args, kind)}, actor="cli", dataset_id=ds.id)
            done.append(f"{kind} {getattr(args, kind)}")
    if not done:
        raise ConfigError("Nothing to change.", "Pass --set FIELD=TEXT, --swap, --tag, --flag, "
                          "--delete or --restore.")
    value = {"id": pair.id, "version": pair.version, **pair.as_record(), "done": done}
    return _out(args, value, f"pair {pair.id} (now version {pair.version}): {'; '.join(done)}")


def _parse_set(item: str) -> tuple[str, object]:
    import json

    field, sep, text = item.partition("=")
    if not sep or field not in ("prompt", "chosen", "rejected", "split", "source", "note"):
        raise ConfigError(f"--set '{item}' is not FIELD=TEXT with a field that can be set.",
                          "Use prompt, chosen, rejected, split, source or note, e.g. "
                          "--set chosen='*CHI: a ball .'")
    if field in ("prompt", "chosen", "rejected") and text.lstrip().startswith("[{"):
        try:
            return field, json.loads(text)  # a conversation, as a JSON message list
        except ValueError:
            pass
    return field, text


def cmd_undo(args) -> int:
    store = open_store()
    pair = edits.undo(store, args.edit, dataset=args.name, actor="cli")
    return _out(args, {"id": pair.id, "version": pair.version, **pair.as_record()},
                f"undid {'edit ' + str(args.edit) if args.edit else 'the last edit'} of pair "
                f"{pair.id} (now version {pair.version})")


def cmd_history(args) -> int:
    store = open_store()
    ds = get_dataset(store, args.name)
    edits.check_dataset(edits.get_pair(store, args.pair), ds.id)
    rows = edits.history(store, args.pair)
    text = "\n".join(f"edit {r['id']}: {r['action']} -> version {r['version']} by "
                     f"{r['actor'] or '?'}{' (undone)' if r['undone'] else ''}: {r['after']}"
                     for r in rows) or "(no edits)"
    return _out(args, rows, text)
