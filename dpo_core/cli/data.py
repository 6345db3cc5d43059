"""`python -m dpo_core data ...`: import, list, show, export, push, split, noise, checks, delete."""

from __future__ import annotations

from ..data import checks, exporter, importer, transforms
from ..data.browse import page
from ..data.datasets import count_pairs, delete_dataset, get_dataset, list_datasets
from ..errors import ConfigError
from ..jobs.rows import list_rows
from ..store import open_store
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

    add_verb(verbs, "list", "list datasets", cmd_list)
    p = add_verb(verbs, "show", "show a dataset and its first pairs", cmd_show)
    p.add_argument("name")

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
    p.add_argument("--eval-size", type=float, required=True, help="count or fraction")
    p.add_argument("--first", action="store_true", help="first rows train, the rest eval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--into")

    p = add_verb(verbs, "noise", "derive a copy with flipped labels", cmd_noise)
    p.add_argument("name")
    p.add_argument("--flip", type=float, required=True, help="fraction of pairs to flip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--into", required=True)

    p = add_verb(verbs, "checks", "run data checks", cmd_checks)
    p.add_argument("name")
    p.add_argument("--reference", help="dataset whose speaker tags are expected")


def _summary(store, ds) -> dict:
    return {"id": ds.id, "name": ds.name, "pairs": count_pairs(store, ds.id),
            "train": count_pairs(store, ds.id, "train"), "eval": count_pairs(store, ds.id, "eval"),
            "parent_id": ds.parent_id, "recipe": ds.recipe, "prompt_format": ds.prompt_format}


def _out(args, value, text: str) -> int:
    print_json(value) if args.json else print(text)
    return 0


def cmd_import(args) -> int:
    store = open_store()
    result = importer.import_pairs(store, args.path, dataset=args.dataset, format=args.format,
                             mapping=importer.parse_mapping(args.map), split=args.split,
                             choices=args.choices, seed=args.seed)
    value = {"dataset": result.dataset.name, "id": result.dataset.id, "pairs": result.count,
             "shape": result.shape, "seconds": round(result.seconds, 3)}
    return _out(args, value, f"imported {result.count:,} pairs ({result.shape}) into "
                             f"'{result.dataset.name}' in {result.seconds:.2f}s")


def cmd_list(args) -> int:
    rows = list_datasets(open_store())
    text = "\n".join(f"{r['id']:>4}  {r['name']:<40} {r['pairs']:>9,} pairs  train {r['train']:,}"
                     f"  eval {r['eval']:,}" for r in rows) or "(no datasets)"
    return _out(args, rows, text)


def cmd_show(args) -> int:
    store = open_store()
    ds = get_dataset(store, args.name)
    value = _summary(store, ds)
    value["first"] = [p.as_record() for p in page(store, ds.id, limit=3).pairs]
    lines = [f"{k}: {v}" for k, v in value.items() if k != "first"]
    lines += [f"  {r}" for r in value["first"]]
    return _out(args, value, "\n".join(lines))


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
    ds = transforms.add_label_noise(store, args.name, args.flip, seed=args.seed, into=args.into)
    return _out(args, _summary(store, ds),
                f"'{ds.name}': flipped {ds.recipe['flipped']:,} of {count_pairs(store, ds.id):,}")


def cmd_checks(args) -> int:
    results = checks.run_checks(open_store(), args.name, reference=args.reference)
    counts = {name: r["count"] for name, r in results.items()}
    value = {name: {"count": r["count"], "ids": r["ids"][:100]} for name, r in results.items()}
    return _out(args, value, "\n".join(f"{k:<18} {v:>8,}" for k, v in counts.items()))
