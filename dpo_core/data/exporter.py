"""Export preference pairs: JSON, JSON Lines, Parquet, a spreadsheet-safe CSV, or the hub."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from ..errors import DataError
from ..store import Store
from .datasets import get_dataset

EXPORT_FORMATS = ("json", "jsonl", "parquet", "csv")
# Formula prefixes a spreadsheet would execute; the CSV export guards them (and only the CSV).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\x00")


def export_pairs(store: Store, dataset: str | int, path: str | Path, format: str | None = None,
                 split: str | None = None) -> int:
    """Write the live pairs as JSON, JSON Lines, Parquet or a spreadsheet-safe CSV."""
    ds = get_dataset(store, dataset)
    path = Path(path)
    fmt = format or {".jsonl": "jsonl", ".parquet": "parquet", ".csv": "csv"}.get(
        path.suffix.lower(), "json")
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"Unknown export format '{fmt}'.", f"Use one of {EXPORT_FORMATS}.")
    sql = "SELECT prompt, chosen, rejected FROM pairs WHERE dataset_id=? AND deleted=0"
    params: tuple = (ds.id,)
    if split:
        sql, params = sql + " AND split=?", (ds.id, split)
    records = [dict(r) for r in store.query(sql + " ORDER BY id", params)]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                        encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {k: pa.array([r[k] for r in records], pa.string())
                   for k in ("prompt", "chosen", "rejected")}
        pq.write_table(pa.table(columns), path)
    else:
        _write_safe_csv(records, path)
    return len(records)


def _write_safe_csv(records: list[dict], path: Path) -> None:
    """A CSV for spreadsheets: cells that start like a formula get a leading apostrophe."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "chosen", "rejected"])
        for r in records:
            writer.writerow([guard_cell(r[k]) for k in ("prompt", "chosen", "rejected")])


def guard_cell(value: str) -> str:
    """Prefix a cell a spreadsheet would run as a formula (= + - @, tab, CR, NUL) with '.

    A cell that already starts with ' gets one more, so `unguard_cell` gives every text back.
    """
    return "'" + value if value.startswith(FORMULA_START + ("'",)) else value


def unguard_cell(value: str) -> str:
    """A CSV cell as it was before `guard_cell` (what a spreadsheet shows for '=...)."""
    if value.startswith("'") and value[1:].startswith(FORMULA_START + ("'",)):
        return value[1:]
    return value


def push_dataset(store: Store, dataset: str | int, repo_id: str, token: str | None = None,
                 private: bool = True) -> str:
    """Push the live pairs (TRL shape, one split per split) to a Hugging Face hub dataset repo."""
    token = token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise DataError("No Hugging Face token: pushing to the hub needs one.",
                        "Create a write token at https://huggingface.co/settings/tokens and set "
                        "HF_TOKEN (or pass token=...); offline, export a file instead.")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or ""):
        raise DataError(f"'{repo_id}' is not a hub repo id.", "Use USER/NAME, e.g. me/my-pairs.")
    ds = get_dataset(store, dataset)
    rows = store.query("SELECT prompt, chosen, rejected, split FROM pairs WHERE dataset_id=? "
                       "AND deleted=0 ORDER BY id", (ds.id,))
    if not rows:
        raise DataError(f"Dataset '{ds.name}' has no live pairs to push.", "Import or restore "
                        "pairs first.")
    from datasets import Dataset as HFDataset
    from datasets import DatasetDict

    splits: dict[str, list[dict]] = {}
    for r in rows:
        splits.setdefault(r["split"], []).append(
            {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
    data = DatasetDict({k: HFDataset.from_list(v) for k, v in splits.items()})
    try:
        data.push_to_hub(repo_id, token=token, private=private)
    except Exception as exc:  # offline, bad token, no write access: all end here
        raise DataError(f"Could not push '{ds.name}' to {repo_id}: {type(exc).__name__}: "
                        f"{str(exc)[:200]}.",
                        "Check the network, that HF_TOKEN is a write token, and that you may "
                        "write to that repo; offline, export a file instead.") from exc
    return f"https://huggingface.co/datasets/{repo_id}"
