"""Export preference pairs: JSON, JSON Lines, Parquet, a spreadsheet-safe CSV, or the hub."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from ..access import require_owner
from ..errors import DataError
from ..store import Store, dumps
from .datasets import get_dataset, iter_pairs

EXPORT_FORMATS = ("json", "jsonl", "parquet", "csv")
PAIR_COLUMNS = ("prompt", "chosen", "rejected")
# Formula prefixes a spreadsheet would execute; the CSV export guards them (and only the CSV).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\x00")


def export_pairs(store: Store, dataset: str | int, path: str | Path, format: str | None = None,
                 split: str | None = None) -> int:
    """Write the live pairs as JSON, JSON Lines, Parquet or a spreadsheet-safe CSV.

    Conversations are written as their message lists (CSV cells: their JSON), and the extra
    columns an import kept follow prompt, chosen and rejected, so a file comes back as it came
    in. Pairs are read and written a batch at a time."""
    require_owner("export data")
    ds = get_dataset(store, dataset)
    path = Path(path)
    fmt = format or {".jsonl": "jsonl", ".parquet": "parquet", ".csv": "csv"}.get(
        path.suffix.lower(), "json")
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"Unknown export format '{fmt}'.", f"Use one of {EXPORT_FORMATS}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    records = (export_record(p) for p in iter_pairs(store, ds.id, split))
    if fmt == "parquet":
        return _write_parquet(list(records), path)
    with path.open("w", encoding="utf-8", newline="" if fmt == "csv" else None) as fh:
        write = {"json": _write_json, "jsonl": _write_jsonl, "csv": _write_safe_csv}[fmt]
        return write(records, fh)


def export_record(pair) -> dict:
    """A pair as a file row: prompt, chosen, rejected (text or message lists), then the extra
    columns of its import."""
    extra = pair.meta.get("columns") if isinstance(pair.meta, dict) else None
    record = {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    if isinstance(extra, dict):
        record.update({k: v for k, v in extra.items() if k not in record})
    return record


def _write_json(records, fh) -> int:
    """The same bytes json.dumps(records, ensure_ascii=False, indent=2) gives, one record at a
    time."""
    n = 0
    for record in records:
        text = json.dumps(record, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        fh.write(("[\n  " if n == 0 else ",\n  ") + text)
        n += 1
    fh.write("\n]" if n else "[]")
    return n


def _write_jsonl(records, fh) -> int:
    n = 0
    for record in records:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n


def _write_parquet(records: list[dict], path: Path) -> int:
    """Columns of one type each: a column mixing text and message lists (or other values)
    holds the JSON of its non-text values, which the import reads back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list(dict.fromkeys(k for r in records for k in r)) or list(PAIR_COLUMNS)
    columns = {}
    for name in names:
        values = [r.get(name) for r in records]
        try:
            columns[name] = pa.array(values, pa.string()) if all(
                isinstance(v, str) for v in values) else pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([v if isinstance(v, str) or v is None else dumps(v)
                                      for v in values], pa.string())
    pq.write_table(pa.table(columns), path)
    return len(records)


def _write_safe_csv(records, fh) -> int:
    """A CSV for spreadsheets: cells that start like a formula get a leading apostrophe. A
    conversation (or any value that is not text) is written as its JSON."""
    writer, header, n = csv.writer(fh), None, 0
    for record in records:
        n += 1
        if header is None:
            header = list(record)
            writer.writerow(header)
        writer.writerow([guard_cell(v if isinstance(v, str) else dumps(v))
                         for v in (record.get(k, "") for k in header)])
    if header is None:
        writer.writerow(PAIR_COLUMNS)
    return n


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
    require_owner("export data")
    token = token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise DataError("No Hugging Face token: pushing to the hub needs one.",
                        "Create a write token at https://huggingface.co/settings/tokens and set "
                        "HF_TOKEN (or pass token=...); offline, export a file instead.")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id or ""):
        raise DataError(f"'{repo_id}' is not a hub repo id.", "Use USER/NAME, e.g. me/my-pairs.")
    ds = get_dataset(store, dataset)
    rows = list(iter_pairs(store, ds.id))
    if not rows:
        raise DataError(f"Dataset '{ds.name}' has no live pairs to push.", "Import or restore "
                        "pairs first.")
    from datasets import Dataset as HFDataset
    from datasets import DatasetDict

    splits: dict[str, list[dict]] = {}
    for p in rows:
        splits.setdefault(p.split, []).append(p.as_record())
    data = DatasetDict({k: HFDataset.from_list(v) for k, v in splits.items()})
    try:
        data.push_to_hub(repo_id, token=token, private=private)
    except Exception as exc:  # offline, bad token, no write access: all end here
        raise DataError(f"Could not push '{ds.name}' to {repo_id}: {type(exc).__name__}: "
                        f"{str(exc)[:200]}.",
                        "Check the network, that HF_TOKEN is a write token, and that you may "
                        "write to that repo; offline, export a file instead.") from exc
    return f"https://huggingface.co/datasets/{repo_id}"
