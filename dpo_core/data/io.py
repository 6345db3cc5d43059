"""Import preference pairs from the shapes users have, and export them again.

Import is all-or-nothing: every row is read and validated in memory first, then the dataset and
its pairs are written in one transaction, so a bad row leaves the store exactly as it was.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..store import Store, dumps, now
from .datasets import Dataset, create_dataset, get_dataset

FORMATS = ("auto", "childes-csv", "csv", "json", "jsonl", "parquet", "hub")
EXPORT_FORMATS = ("json", "jsonl", "parquet", "csv")
MAX_BYTES = 2 * 1024**3
MAX_ROWS = 5_000_000
SHAPES = (
    "Accepted shapes: CHILDES minimal-pair CSV (pospair, negpair with '*MOT: ...<TAB>*CHI: ...'); "
    "rows with prompt, chosen, rejected (text or lists of {role, content} messages) as JSON list, "
    "JSON Lines, Parquet or CSV; chosen + rejected only (implicit prompt); system + input + "
    "chosen + rejected; context + choices + answer (multiple choice); any columns with "
    "--map prompt=COL,chosen=COL,rejected=COL; or a hub dataset id."
)
# Formula prefixes a spreadsheet would execute; the CSV export guards them (and only the CSV).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\x00")
TURN_TAG = re.compile(r"(?:^|\n)[^\n:]{1,40}:")

Row = tuple[str, str, str, str]  # prompt, chosen, rejected, meta_json


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
        records = _apply_mapping(records, mapping, label)
        shape = _detect_shape(records[0], label)
        rows, prompt_format = _convert(records, shape, label, choices=choices, seed=seed,
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
    return _check_objects(records, str(path), rows_are_lines=True)


def _check_objects(records: list, label: str, rows_are_lines: bool = False) -> list[dict]:
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


# -- shapes --------------------------------------------------------------------------------
def _apply_mapping(records: list[dict], mapping: dict[str, str] | None, label: str) -> list:
    if not mapping:
        return records
    available = set(records[0])
    for target, column in mapping.items():
        if column not in available:
            raise DataError(f"{label}: the mapping {target}={column} names a column that is "
                            f"not there (columns: {', '.join(sorted(map(str, available)))}).",
                            "Fix --map to use existing column names.")
    return [{**r, **{t: r.get(c) for t, c in mapping.items()}} for r in records]


def _detect_shape(first: dict, label: str) -> str:
    keys = set(first)
    if {"prompt", "chosen", "rejected"} <= keys:
        return "conversational" if isinstance(first["chosen"], list) else "standard"
    if {"system", "input", "chosen", "rejected"} <= keys or {"question", "chosen",
                                                             "rejected"} <= keys:
        return "system"
    if {"chosen", "rejected"} <= keys:
        return "implicit"
    if ({"context", "ctx"} & keys) and ({"choices", "endings"} & keys) and (
            {"answer", "label"} & keys):
        return "multiple-choice"
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in keys]
    raise DataError(f"{label} row 1 lacks the column(s) {', '.join(missing)} (has: "
                    f"{', '.join(sorted(map(str, keys)))}).",
                    f"Rename the columns or pass --map prompt=COL,chosen=COL,rejected=COL. "
                    f"{SHAPES}")


def _convert(records: list[dict], shape: str, label: str, **options) -> tuple[list[Row], dict]:
    if shape == "multiple-choice":
        return _from_choices(records, label, **options), {"kind": "plain", "template": "{prompt}"}
    rows, systems = [], set()
    for number, record in enumerate(records, 1):
        where = f"{label} row {number}"
        meta = "{}"
        if shape == "implicit":
            prompt, chosen, rejected = _split_prompt(record, where)
        elif shape == "system":
            system = _text(record, "system", where, allow_empty=True) if "system" in record else ""
            prompt = _text(record, "input" if "input" in record else "question", where)
            chosen, rejected = _text(record, "chosen", where), _text(record, "rejected", where)
            systems.add(system)
            meta = dumps({"system": system}) if system else "{}"
        else:
            prompt, chosen, rejected = (_text(record, k, where) for k in
                                        ("prompt", "chosen", "rejected"))
        if chosen == rejected:
            raise DataError(f"{where}: chosen and rejected are identical ({chosen[:60]!r}).",
                            "Remove the row or fix one side; a pair must differ.")
        rows.append((prompt, chosen, rejected, meta))
    prompt_format = {"kind": "chat" if shape == "conversational" else "plain"}
    if shape == "system" and len(systems) == 1 and "" not in systems:
        prompt_format["system"] = systems.pop()
    return rows, prompt_format


def _text(record: dict, key: str, where: str, allow_empty: bool = False) -> str:
    """A text field as stored: strings as they are, message lists as JSON text."""
    if key not in record:
        raise DataError(f"{where} lacks the column '{key}'.",
                        f"Add '{key}' to that row: every row needs the columns the first one "
                        "has.")
    value = record[key]
    if isinstance(value, list):
        value = _messages(value, key, where)
    if not isinstance(value, str):
        raise DataError(f"{where}, column {key}: expected text, got "
                        f"{type(value).__name__} ({str(value)[:40]!r}).",
                        "Every prompt/chosen/rejected must be text or a list of messages.")
    if not allow_empty and not value.strip():
        raise DataError(f"{where}, column {key}: the field is empty.",
                        "Fill it in or remove the row.")
    return value


def _messages(value: list, key: str, where: str) -> str:
    for message in value:
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise DataError(f"{where}, column {key}: a message is not {{role, content}} text "
                            f"({str(message)[:60]!r}).", SHAPES)
    if not value:
        raise DataError(f"{where}, column {key}: the message list is empty.", SHAPES)
    return dumps(value)


def _split_prompt(record: dict, where: str) -> tuple[str, str, str]:
    """The shared start of chosen and rejected becomes the prompt (cut at a turn boundary)."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    if isinstance(chosen, list) and isinstance(rejected, list):
        _messages(chosen, "chosen", where), _messages(rejected, "rejected", where)
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        if n == 0:
            raise DataError(f"{where}: chosen and rejected share no leading messages, so no "
                            "prompt can be taken from them.", SHAPES)
        return dumps(chosen[:n]), dumps(chosen[n:]), dumps(rejected[n:])
    chosen, rejected = _text(record, "chosen", where), _text(record, "rejected", where)
    common = len(_common_prefix(chosen, rejected))
    tags = [m.end() for m in TURN_TAG.finditer(chosen[:common])]
    cut = tags[-1] if tags else chosen.rfind(" ", 0, common) + 1
    if cut <= 0 or not chosen[:cut].strip():
        raise DataError(f"{where}: chosen and rejected share no prompt (no common start ending "
                        "at a turn boundary).", f"Add a prompt column. {SHAPES}")
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _from_choices(records: list[dict], label: str, *, choices: str, seed: int,
                  template: str) -> list[Row]:
    """Multiple choice: the right choice against each wrong one, or one sampled wrong one."""
    rng = random.Random(seed)
    rows = []
    for number, record in enumerate(records, 1):
        where = f"{label} row {number}"
        context = record.get("context", record.get("ctx"))
        options = record.get("choices", record.get("endings"))
        answer = record.get("answer", record.get("label"))
        if not isinstance(context, str) or not isinstance(options, list) or len(options) < 2:
            raise DataError(f"{where}: needs context text and a list of at least two choices.",
                            SHAPES)
        try:
            answer = int(answer)
        except (TypeError, ValueError):
            raise DataError(f"{where}, column answer: {answer!r} is not a choice index.",
                            SHAPES) from None
        if not 0 <= answer < len(options):
            raise DataError(f"{where}, column answer: index {answer} is outside the "
                            f"{len(options)} choices.", "Answers count from 0.")
        prompt = template.format(context=context, choices=options)
        wrong = [o for i, o in enumerate(options) if i != answer]
        if choices == "sample":
            wrong = [rng.choice(wrong)]
        meta = dumps({"answer": answer})
        rows.extend((prompt, str(options[answer]), str(w), meta) for w in wrong)
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


# -- export --------------------------------------------------------------------------------
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
