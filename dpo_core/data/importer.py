"""Import preference pairs from the files users have (CSV/TSV, JSON, JSON Lines, Parquet, the
hub).

The file is streamed: each record is checked and turned into rows as it is read, and the rows go
to a staging file on disk, so memory stays a fixed few megabytes whatever the file's size. Only
then are the dataset and its pairs written, in one transaction: the write lock is held for the
insert alone, and a refused file leaves the store exactly as it was.

Bad rows refuse the whole file by default. With `bad_rows="skip"` the good rows are imported and
each bad one is reported (row, field, reason), in the result and as a CSV file.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..access import require_owner
from ..errors import DataError
from ..store import Store, now
from .datasets import Dataset, check_new_name, create_dataset, get_dataset
from .exporter import unguard_cell
from .readers import (
    Progress,
    check_header,
    csv_rows,
    delimiter_of,
    file_encoding,
    hub_records,
    json_array,
    json_lines,
    no_progress,
    parquet_records,
    text_stream,
)
from .shapes import (
    SHAPES,
    Row,
    RowError,
    RowMaker,
    check_mapping,
    detect_shape,
    mapped,
    prompt_format_of,
)

FORMATS = ("auto", "childes-csv", "csv", "tsv", "json", "jsonl", "parquet", "hub")
BAD_ROWS = ("refuse", "skip")
MAX_BYTES = 2 * 1024**3
MAX_ROWS = 5_000_000
WRITE_BATCH = 2000  # rows per INSERT statement
CHILDES_PROMPT_FORMAT = {"template": "{prompt} ", "kind": "plain"}


@dataclass
class ImportResult:
    dataset: Dataset
    count: int
    shape: str
    seconds: float
    encoding: str = ""
    skipped: int = 0  # bad rows left out (bad_rows="skip")
    bad_rows: list[dict] = field(default_factory=list)  # the first 100: {row, field, reason}
    report: str | None = None  # the CSV listing every bad row


def import_pairs(store: Store, source, *, dataset: str, format: str = "auto",
                 mapping: dict[str, str] | None = None, split: str = "train",
                 choices: str = "each", seed: int = 0, template: str = "{context}",
                 max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS,
                 description: str = "", encoding: str | None = None, bad_rows: str = "refuse",
                 report: str | Path | None = None,
                 progress: Progress | None = None) -> ImportResult:
    """Read `source` (a path, a hub id or a list of dicts) row by row and write all its pairs in
    one transaction; bad rows refuse the file, or with bad_rows="skip" are reported.
    `progress(fraction, message)` hears how far the reading is."""
    require_owner("import data")
    started, progress = now(), progress or no_progress
    if format not in FORMATS:
        raise DataError(f"Unknown format '{format}'.", f"Use one of: {', '.join(FORMATS)}.")
    if bad_rows not in BAD_ROWS:
        raise DataError(f"bad_rows is '{bad_rows}'.", "Use 'refuse' (all or nothing) or 'skip' "
                        "(import the good rows, report the bad ones).")
    check_new_name(store, dataset)
    source_ = _Source.open(source, format, split, max_bytes, encoding, progress)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as staged, \
            tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as bad:
        stage = _Stage(source_, staged, bad, bad_rows, max_rows,
                       dict(choices=choices, seed=seed, template=template), mapping)
        stage.run()
        progress(1.0, f"writing {stage.count:,} pairs")
        with store.write() as conn:
            ds = create_dataset(store, dataset, prompt_format=stage.prompt_format,
                                description=description, recipe={"import": {
                                    "source": source_.label, "format": source_.format,
                                    "shape": stage.shape, "skipped": stage.skipped}})
            _write_staged(conn, ds.id, staged, split, source_.label)
        written = _write_report(bad, report) if stage.skipped and report else None
    return ImportResult(get_dataset(store, ds.id), stage.count, stage.shape, now() - started,
                        source_.encoding, stage.skipped, stage.examples, written)


# -- reading --------------------------------------------------------------------------------
@dataclass
class _Source:
    """What is read: its label for messages, resolved format, encoding and records."""

    label: str
    format: str
    encoding: str
    records: Iterator[tuple[int, object]]

    @classmethod
    def open(cls, source, fmt: str, split: str, max_bytes: int, encoding: str | None,
             progress: Progress) -> _Source:
        if isinstance(source, list):
            if not source:
                raise DataError("The list of records is empty.", SHAPES)
            return cls("records", "json", "", enumerate(source, 1))
        path = Path(str(source))
        if fmt == "hub" or (fmt == "auto" and not path.exists() and _looks_like_hub_id(str(source))):
            return cls(str(source), "hub", "", hub_records(str(source), split))
        _check_file(path, max_bytes)
        fmt = _format_from_suffix(path) if fmt == "auto" else fmt
        if fmt == "parquet":
            return cls(str(path), fmt, "", parquet_records(path, progress))
        encoding = file_encoding(path, encoding)
        stream, raw = text_stream(path, encoding)
        size, label = path.stat().st_size, str(path)
        shown = "utf-8" if encoding == "utf-8-sig" else encoding

        def reported(records):
            try:
                for number, record in records:
                    if number % 2000 == 0:
                        progress(min(0.99, raw.read_bytes / size), f"read {number:,} rows")
                    yield number, record
            finally:
                stream.close()

        if fmt in ("json", "jsonl"):
            _refuse_whitespace(stream, label)
            reader = json_array if fmt == "json" else json_lines
            return cls(label, fmt, shown, reported(reader(stream, label)))
        return cls(label, fmt, shown, reported(_csv_records(stream, path, fmt, max_bytes)))


def _refuse_whitespace(stream, label: str) -> None:
    head = stream.read(1 << 16)
    while head and not head.strip():
        more = stream.read(1 << 16)
        if not more:
            raise DataError(f"{label} holds only whitespace.", SHAPES)
        head = more
    if not head:
        raise DataError(f"{label} holds only whitespace.", SHAPES)
    stream.seek(0)


def _csv_records(stream, path: Path, fmt: str, limit: int) -> Iterator[tuple[int, object]]:
    """Records of a CSV/TSV as {column: cell}; a CHILDES pair file as its list of cells."""
    first = stream.readline()
    stream.seek(0)
    delimiter = "\t" if fmt == "tsv" else delimiter_of(path, first)
    rows = csv_rows(stream, str(path), delimiter, limit)
    header = check_header(next(rows, (0, None))[1] or [], str(path))
    if not header:
        raise DataError(f"{path} holds only whitespace.", SHAPES)
    childes = fmt == "childes-csv" or {"pospair", "negpair"} <= set(header)
    seen = False
    for number, cells in rows:
        seen = True
        if len(cells) != len(header):  # given as the row: the importer refuses it or skips it
            yield number, RowError(f"{path} row {number}", number, "", f"has {len(cells)} cells "
                                   f"but the header has {len(header)}.",
                                   "Quote cells that contain the delimiter or newlines.")
        elif childes:
            yield number, _Childes(header, cells)
        else:  # spreadsheet-safe CSVs (ours included) prefix formula-like cells with '
            yield number, dict(zip(header, map(unguard_cell, cells), strict=True))
    if not seen:
        raise DataError(f"{path} has a header but no data rows.",
                        "Add one row per pair under the header (or check that the file was "
                        "saved completely).")


@dataclass
class _Childes:
    header: list[str]
    cells: list[str]


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
             ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}
    if suffix not in known:
        raise DataError(f"Cannot tell the format of {path} from its extension '{suffix}'.",
                        f"Pass --format ({', '.join(FORMATS[1:])}). {SHAPES}")
    return known[suffix]


# -- checking, row by row -------------------------------------------------------------------
class _Stage:
    """Records -> checked rows in the staging file; bad rows refused or reported."""

    def __init__(self, source: _Source, staged, bad, bad_rows: str, max_rows: int,
                 options: dict, mapping: dict[str, str] | None):
        self.source, self.staged, self.bad = source, staged, bad
        self.skip, self.max_rows = bad_rows == "skip", max_rows
        self.options, self.mapping = options, mapping
        self.maker = None
        self.shape, self.prompt_format = "", {}
        self.count = self.skipped = 0
        self.examples: list[dict] = []
        self.report = csv.writer(bad)

    def run(self) -> None:
        self.report.writerow(["row", "field", "reason"])
        for number, record in self.source.records:
            try:
                rows = self._rows(record, number)
            except RowError as exc:
                if not self.skip:
                    raise
                self._skip(exc)
                continue
            self.count += len(rows)
            if self.count > self.max_rows:
                raise DataError(f"{self.source.label} has more than the limit of "
                                f"{self.max_rows:,} pairs.", "Split the file, or raise max_rows.")
            self.staged.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if not self.count:
            raise DataError(f"{self.source.label}: none of its {self.skipped:,} rows could be "
                            "imported.", "See the bad-rows report for why; fix the file.")

    def _rows(self, record, number: int) -> list[Row]:
        where = f"{self.source.label} row {number}"
        if isinstance(record, RowError):  # the reader could not read this row
            raise record
        if isinstance(record, _Childes):
            self.shape, self.prompt_format = "childes", CHILDES_PROMPT_FORMAT
            return [_childes_row(record, number, self.source.label)]
        if not isinstance(record, dict):
            raise RowError(where, number, "", f"is a {type(record).__name__}, not an object "
                           "with named fields.", SHAPES)
        if self.maker is None:  # the first good record fixes the shape
            check_mapping(record, self.mapping, self.source.label)
            self.shape = detect_shape(mapped(record, self.mapping), self.source.label)
            self.prompt_format = prompt_format_of(self.shape)
            self.maker = RowMaker(self.shape, self.source.label, **self.options)
        return self.maker.rows(mapped(record, self.mapping), number)

    def _skip(self, exc: RowError) -> None:
        self.skipped += 1
        entry = {"row": exc.row, "field": exc.field, "reason": exc.reason}
        self.report.writerow([exc.row, exc.field, exc.reason])
        if len(self.examples) < 100:
            self.examples.append(entry)


def _childes_row(record: _Childes, number: int, label: str) -> Row:
    """prompt = the shared *MOT: turn; chosen/rejected = the *CHI: turns of pospair/negpair."""
    header, row = record.header, record.cells
    where = f"{label} row {number}"
    pos, neg = header.index("pospair"), header.index("negpair")
    good, bad = row[pos].split("\t"), row[neg].split("\t")
    if len(good) != 2 or len(bad) != 2:
        column = "pospair" if len(good) != 2 else "negpair"
        raise RowError(where, number, column, "expected two turns separated by a TAB "
                       "('*MOT: ...<TAB>*CHI: ...').", SHAPES)
    prompt, chosen, rejected = good[0].strip(), good[1].strip(), bad[1].strip()
    if prompt != bad[0].strip():
        raise RowError(where, number, "", f"the first turn of pospair and negpair differ "
                       f"({prompt[:60]!r} vs {bad[0].strip()[:60]!r}).",
                       "Both cells of a minimal pair must share the prompt turn.")
    for column, value in (("pospair", prompt), ("pospair", chosen), ("negpair", rejected)):
        if not value:
            raise RowError(where, number, column, "empty turn.", SHAPES)
    if chosen == rejected:
        raise RowError(where, number, "", f"chosen and rejected are identical "
                       f"({chosen[:60]!r}).", "Remove the row; a pair must differ.")
    return (prompt, chosen, rejected, "{}", 0)


# -- writing --------------------------------------------------------------------------------
def _write_staged(conn, dataset_id: int, staged, split: str, source: str) -> None:
    """Insert the staged rows a batch per statement: the FTS trigger then runs inside one
    statement, several times faster than a savepoint per row."""
    t = now()
    staged.seek(0)
    batch: list[str] = []
    for line in staged:
        batch.append(line)
        if len(batch) == WRITE_BATCH:
            _insert_batch(conn, dataset_id, batch, split, source, t)
            batch = []
    if batch:
        _insert_batch(conn, dataset_id, batch, split, source, t)


def _insert_batch(conn, dataset_id: int, lines: list[str], split: str, source: str,
                  t: float) -> None:
    blob = "[" + ",".join(lines) + "]"
    if "\\u0000" in blob:  # SQLite's JSON functions end text at NUL: take the slow path
        conn.executemany(
            "INSERT INTO pairs(dataset_id, prompt, chosen, rejected, split, source, meta_json,"
            " message_fields, created, updated) VALUES(?,?,?,?,?,?,?,?,?,?)",
            [(dataset_id, *r[:3], split, source, r[3], r[4], t, t) for r in json.loads(blob)])
        return
    conn.execute(
        "INSERT INTO pairs(dataset_id, prompt, chosen, rejected, split, source, meta_json,"
        " message_fields, created, updated) SELECT ?, value->>0, value->>1, value->>2, ?, ?,"
        " value->>3, value->>4, ?, ? FROM json_each(?) ORDER BY key",
        (dataset_id, split, source, t, t, blob))


def _write_report(bad, report: str | Path) -> str:
    path = Path(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    bad.seek(0)
    path.write_text(bad.read(), encoding="utf-8")
    return str(path)


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
