"""Import preference pairs from the files users have (CSV, JSON, JSON Lines, Parquet, the hub).

Import is all-or-nothing: every row is read and validated in memory first, then the dataset and
its pairs are written in one transaction, so a bad row leaves the store exactly as it was.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..store import Store, now
from .datasets import Dataset, create_dataset, get_dataset
from .exporter import unguard_cell
from .shapes import SHAPES, Row, apply_mapping, convert, detect_shape

FORMATS = ("auto", "childes-csv", "csv", "json", "jsonl", "parquet", "hub")
MAX_BYTES = 2 * 1024**3
MAX_ROWS = 5_000_000


@dataclass
class ImportResult:
    dataset: Dataset
    count: int
    shape: str
    seconds: float


def import_pairs(store: Store, source, *, dataset: str, format: str = "auto",
                 mapping: dict[str, str] | None = None, split: str = "train",
                 choices: str = "each", seed: int = 0, template: str = "{context}",
                 max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS,
                 description: str = "") -> ImportResult:
    """Read `source` (a path, a hub id or a list of dicts), validate every row, write all or none."""
    started = now()
    if format not in FORMATS:
        raise DataError(f"Unknown format '{format}'.", f"Use one of: {', '.join(FORMATS)}.")
    label, records, fmt = _load(source, format, split, max_bytes, max_rows)
    if fmt == "childes-csv":
        shape, rows, prompt_format = "childes", records, {"template": "{prompt} ", "kind": "plain"}
    else:
        records = apply_mapping(records, mapping, label)
        shape = detect_shape(records[0], label)
        rows, prompt_format = convert(records, shape, label, choices=choices, seed=seed,
                                       template=template)
    if len(rows) > max_rows:
        raise DataError(f"{label} has {len(rows):,} pairs, more than the limit {max_rows:,}.",
                        "Split the file, or raise max_rows.")
    with store.write() as conn:
        ds = create_dataset(store, dataset, prompt_format=prompt_format, description=description,
                            recipe={"import": {"source": label, "format": fmt, "shape": shape}})
        _write_rows(conn, ds.id, rows, split, label)
    return ImportResult(get_dataset(store, ds.id), len(rows), shape, now() - started)


# -- reading -------------------------------------------------------------------------------
def _load(source, fmt: str, split: str, max_bytes: int, max_rows: int):
    """(label, records or CHILDES rows, resolved format)."""
    if isinstance(source, list):
        if not source:
            raise DataError("The list of records is empty.", SHAPES)
        return "records", _check_objects(source, "records"), "json"
    path = Path(str(source))
    if fmt == "hub" or (fmt == "auto" and not path.exists() and _looks_like_hub_id(str(source))):
        return str(source), _load_hub(str(source), split), "hub"
    _check_file(path, max_bytes)
    if fmt == "auto":
        fmt = _format_from_suffix(path)
    if fmt == "parquet":
        return str(path), _load_parquet(path), fmt
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path} holds only whitespace.", SHAPES)
    if fmt == "json":
        return str(path), _load_json(text, path), fmt
    if fmt == "jsonl":
        return str(path), _load_jsonl(text, path), fmt
    header, body = _read_csv(text, path)
    if fmt == "childes-csv" or {"pospair", "negpair"} <= set(header):
        return str(path), _childes_rows(header, body, path), "childes-csv"
    # spreadsheet-safe CSVs (ours included) prefix formula-like cells with ': take it off
    return str(path), [dict(zip(header, map(unguard_cell, r), strict=True)) for r in body], "csv"


def _check_file(path: Path, max_bytes: int) -> None:
    if not path.is_file():
        raise DataError(f"No file {path}.", "Check the path, or pass a hub id with --format hub.")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path} is empty (0 bytes).",
                        "Check that the file was saved or copied completely, then import it "
                        "again.")
    if size > max_bytes:
        raise DataError(f"{path} is {size / 1e9:.1f} GB, over the import limit of "
                        f"{max_bytes / 1e9:.1f} GB.", "Split the file, or raise max_bytes.")


def _looks_like_hub_id(text: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", text)) and not Path(text).suffix


def _format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    known = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
             ".csv": "csv", ".tsv": "csv"}
    if suffix not in known:
        raise DataError(f"Cannot tell the format of {path} from its extension '{suffix}'.",
                        f"Pass --format ({', '.join(FORMATS[1:])}). {SHAPES}")
    return known[suffix]


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 text: byte {exc.start} (line {line}) cannot be "
                        "decoded.", "Save the file as UTF-8 (for example with iconv or your "
                        "editor's 'save with encoding').") from exc


def _load_json(text: str, path: Path) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column "
                        f"{exc.colno}.", f"Fix the JSON, or use JSON Lines. {SHAPES}") from exc
    if not isinstance(data, list):
        raise DataError(f"{path} holds a JSON {type(data).__name__}, not a list of rows.",
                        f"Wrap the rows in [ ... ]. {SHAPES}")
    if not data:
        raise DataError(f"{path} holds an empty list.",
                        'Put the pairs in the list: [{"prompt": ..., "chosen": ..., '
                        '"rejected": ...}, ...].')
    return _check_objects(data, str(path))


def _load_jsonl(text: str, path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: \x85 is text
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} row {number}: not valid JSON ({exc.msg}, column "
                            f"{exc.colno}).", "Each line must be one JSON object.") from exc
    return _check_objects(records, str(path))


def _check_objects(records: list, label: str) -> list[dict]:
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(f"{label} row {number} is a {type(record).__name__}, not an object "
                            "with named fields.", SHAPES)
    return records


def _load_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} cannot be read as Parquet: {exc}.", SHAPES) from exc
    if not records:
        raise DataError(f"{path} has no rows.", SHAPES)
    return records


def _load_hub(name: str, split: str) -> list[dict]:
    try:
        from datasets import load_dataset

        return list(load_dataset(name, split=split))
    except Exception as exc:  # offline, unknown id, missing split: all end here
        raise DataError(f"Cannot load hub dataset '{name}' (split '{split}'): "
                        f"{type(exc).__name__}: {str(exc)[:200]}.",
                        "Check the id and split, and that the Hugging Face hub is reachable; "
                        "offline, download the data and import the file instead.") from exc


def _read_csv(text: str, path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable CSV: {exc}.", SHAPES) from exc
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise DataError(f"{path} has a header but no data rows.",
                        "Add one row per pair under the header (or check that the file was "
                        "saved completely).")
    header = [h.strip() for h in rows[0]]
    for number, row in enumerate(rows[1:], 1):
        if len(row) != len(header):
            raise DataError(f"{path} row {number} has {len(row)} cells but the header has "
                            f"{len(header)}.", "Quote cells that contain commas or newlines.")
    return header, rows[1:]


def _childes_rows(header: list[str], body: list[list[str]], path: Path) -> list[Row]:
    """prompt = the shared *MOT: turn; chosen/rejected = the *CHI: turns of pospair/negpair."""
    if not {"pospair", "negpair"} <= set(header):
        raise DataError(f"{path} lacks the columns pospair and negpair (has: "
                        f"{', '.join(header)}).", SHAPES)
    pos, neg = header.index("pospair"), header.index("negpair")
    rows = []
    for number, row in enumerate(body, 1):
        good, bad = row[pos].split("\t"), row[neg].split("\t")
        if len(good) != 2 or len(bad) != 2:
            column = "pospair" if len(good) != 2 else "negpair"
            raise DataError(f"{path} row {number}, column {column}: expected two turns "
                            "separated by a TAB ('*MOT: ...<TAB>*CHI: ...').", SHAPES)
        prompt, chosen, rejected = good[0].strip(), good[1].strip(), bad[1].strip()
        if prompt != bad[0].strip():
            raise DataError(f"{path} row {number}: the first turn of pospair and negpair "
                            f"differ ({prompt[:60]!r} vs {bad[0].strip()[:60]!r}).",
                            "Both cells of a minimal pair must share the prompt turn.")
        for column, value in (("pospair", prompt), ("pospair", chosen), ("negpair", rejected)):
            if not value:
                raise DataError(f"{path} row {number}, column {column}: empty turn.", SHAPES)
        if chosen == rejected:
            raise DataError(f"{path} row {number}: chosen and rejected are identical "
                            f"({chosen[:60]!r}).", "Remove the row; a pair must differ.")
        rows.append((prompt, chosen, rejected, "{}"))
    return rows


# -- writing -------------------------------------------------------------------------------
def _write_rows(conn, dataset_id: int, rows: list[Row], split: str, source: str) -> None:
    """Insert rows in one statement: the FTS trigger then runs inside a single statement,
    which is several times faster than one savepoint per row."""
    t = now()
    blob = json.dumps(rows, ensure_ascii=False)
    if "\\u0000" in blob:  # SQLite's JSON functions end text at NUL: take the slow path
        conn.executemany(
            "INSERT INTO pairs(dataset_id, prompt, chosen, rejected, split, source, meta_json,"
            " created, updated) VALUES(?,?,?,?,?,?,?,?,?)",
            [(dataset_id, *r[:3], split, source, r[3], t, t) for r in rows])
        return
    conn.execute(
        "INSERT INTO pairs(dataset_id, prompt, chosen, rejected, split, source, meta_json,"
        " created, updated) SELECT ?, value->>0, value->>1, value->>2, ?, ?, value->>3, ?, ? "
        "FROM json_each(?) ORDER BY key", (dataset_id, split, source, t, t, blob))


def parse_mapping(text: str | None) -> dict[str, str] | None:
    """'prompt=q,chosen=a,rejected=b' -> {'prompt': 'q', ...}."""
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        target, sep, column = part.partition("=")
        if not sep or not target.strip() or not column.strip():
            raise DataError(f"--map part '{part}' is not FIELD=COLUMN.",
                            "Write --map prompt=COL,chosen=COL,rejected=COL.")
        mapping[target.strip()] = column.strip()
    return mapping
