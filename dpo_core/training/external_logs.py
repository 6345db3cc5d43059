"""Import a training log written elsewhere as a read-only run, so old runs compare with new ones.

Accepted files:
- TRL's metrics as CSV: a `step` column and one column per logged key (`loss`,
  `rewards/chosen`, ..., `eval_loss`); empty cells mean "not logged at this step".
- A Hugging Face `trainer_state.json` (its `log_history`), or a JSON list / JSONL of log records
  that each carry `step`.
- A Weights & Biases history export: keys prefixed `train/` and `eval/`, step in
  `train/global_step` (or `_step`).

Keys are stored as TRL logs them, like the lab's own runs: train keys verbatim (`loss`,
`rewards/margins`) in split 'train'; eval keys with TRL's `eval_` prefix (`eval_loss`,
`eval_rewards/accuracies`) in split 'eval'. W&B's `train/loss` becomes `loss`, `eval/loss`
becomes `eval_loss`. Cells reading nan/inf are kept as NULL (the store's "not finite").
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..access import require_owner
from ..errors import DataError
from ..jobs.rows import insert_job, new_job_id
from ..store import Store, now
from .metrics import write_records

STEP_COLUMNS = ("step", "global_step", "train/global_step", "Step", "_step")
SKIPPED = {"_runtime", "_timestamp", "_step", "train/global_step", "global_step", "step"}
FORMATS = "TRL metrics CSV (step, loss, rewards/...), trainer_state.json, JSONL of log records, " \
          "or a W&B history export (train/..., eval/...)"

Record = tuple[int, dict[str, float | None]]


def import_training_log(store: Store, path: str | Path, name: str | None = None) -> str:
    """Read a training log and store it as a completed, read-only run; returns the run id."""
    require_owner("import training logs")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Training log {path} does not exist.", f"Pass a file: {FORMATS}.")
    records = read_log(path)
    if not records:
        raise DataError(f"{path} holds no logged values.", f"Pass a non-empty file: {FORMATS}.")
    run_id = new_job_id("train")  # sorts and reads like the lab's own runs
    last_step = max(step for step, _ in records)
    config = {"name": name or path.stem, "source": str(path.resolve()), "format": _kind(path)}
    with store.write() as conn:
        insert_job(conn, run_id, "external", name or path.stem, config, "", status="completed",
                   finished=now(), step=last_step, total_steps=last_step, read_only=1)
        write_records(store, run_id, records)  # a later record for a step/key wins, as in TRL
    return run_id


def _kind(path: Path) -> str:
    return "csv" if path.suffix.lower() in (".csv", ".tsv") else "json"


def read_log(path: Path) -> list[Record]:
    """(step, {key: value}) records of a log file in any accepted format."""
    if _kind(path) == "csv":
        return _read_csv(path)
    return _read_json(path)


# ---------------------------------------------------------------------------------------
# CSV (TRL metrics, W&B history)
# ---------------------------------------------------------------------------------------
def _read_csv(path: Path) -> list[Record]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = list(csv.reader(io.StringIO(text_of(path), newline=""), delimiter=delimiter))
    if not rows:
        raise DataError(f"{path} is empty.", f"Pass a file with a header row: {FORMATS}.")
    header, body = rows[0], rows[1:]
    if {"Name", "State"} <= set(header):
        raise DataError(f"{path} is a W&B runs table (one row per run, final values only), not "
                        "the log of one training run.",
                        "`python -m dpo_core import-log` (or the Runs page's Import tab) takes it "
                        "as a sweep's leaderboard; for one run's curves export its history (W&B "
                        "run page > Logs/Charts > export CSV).")
    step_col = next((c for c in STEP_COLUMNS if c in header), None)
    if step_col is None:
        raise DataError(f"{path} has no step column (columns: {', '.join(header[:8])}"
                        f"{' ...' if len(header) > 8 else ''}).",
                        f"Add a column named one of {', '.join(STEP_COLUMNS)}: the optimizer "
                        "step of each logged row.")
    si = header.index(step_col)
    columns = [(i, metric_key(c)) for i, c in enumerate(header) if c not in SKIPPED and metric_key(c)]
    columns = [(i, k) for i, k in columns if not _text_column(body, i)]
    records = []
    for line, row in enumerate(body, start=2):
        if not any(cell.strip() for cell in row):
            continue
        step = _step(row[si] if si < len(row) else "", path, line, step_col)
        if step is None:
            continue  # W&B rows without a train step (e.g. system metrics)
        values = {}
        for i, key in columns:
            cell = row[i].strip() if i < len(row) else ""
            if cell:
                values[key] = _value(cell, path, line, header[i])
        if values:
            records.append((step, values))
    return records


def metric_key(column: str) -> str:
    """TRL's key for a column: W&B's train/x -> x, eval/x -> eval_x; others verbatim."""
    column = column.strip()
    if column.startswith("train/"):
        return column[len("train/"):]
    if column.startswith("eval/"):
        return "eval_" + column[len("eval/"):]
    return column


def _text_column(body: list[list[str]], i: int) -> bool:
    """True for a column with no number in it (a name, a note): skipped, not an error."""
    cells = [r[i].strip() for r in body if i < len(r) and r[i].strip()]
    return bool(cells) and not any(_is_number(c) for c in cells)


def _is_number(cell: str) -> bool:
    return number_cell(cell) is not None


def number_cell(cell: str) -> float | None:
    """The number a text cell holds (nan and inf included), or None for any other text."""
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def text_of(path: Path) -> str:
    """A log file's text (UTF-8, a BOM dropped); a binary or otherwise encoded file is a clear
    error naming where it stops being text."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a UTF-8 text file (byte {exc.start} is 0x"
                        f"{data[exc.start]:02x}); a training log is CSV or JSON text.",
                        f"Pass the log itself ({FORMATS}); re-save a spreadsheet as CSV UTF-8."
                        ) from None


def _step(cell: str, path: Path, line: int, column: str) -> int | None:
    cell = cell.strip()
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{path}, row {line}, column {column}: step is {cell!r}, not a number.",
                        "Steps must be whole numbers (the optimizer step of each log).") from None
    if not math.isfinite(value) or not value.is_integer() or value < 0:
        raise DataError(f"{path}, row {line}, column {column}: step is {cell!r}.",
                        "Steps must be whole numbers >= 0.")
    return int(value)


def _value(cell, path: Path, line: int, column: str) -> float | None:
    try:
        value = float(cell)
    except (TypeError, ValueError):
        raise DataError(f"{path}, row {line}, column {column}: {cell!r} is not a number.",
                        "Metric columns hold numbers (nan/inf allowed); remove or fix the "
                        "cell.") from None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------
# JSON (trainer_state.json, list of records, JSONL)
# ---------------------------------------------------------------------------------------
def _read_json(path: Path) -> list[Record]:
    text = text_of(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is neither JSON nor JSONL: {exc}.",
                            f"Pass one of: {FORMATS}.") from None
    if isinstance(data, dict) and "log_history" in data:
        data = data["log_history"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path} is not a list of log records.",
                        "Pass trainer_state.json (with log_history) or a list of "
                        "{step: N, loss: ..., ...} records.")
    records = []
    for n, rec in enumerate(data, start=1):
        step_key = next((k for k in STEP_COLUMNS if k in rec), None)
        if step_key is None:
            raise DataError(f"{path}, record {n} has no step (keys: {', '.join(list(rec)[:8])}).",
                            f"Each record needs one of {', '.join(STEP_COLUMNS)}.")
        step = _step(str(rec[step_key]), path, n, step_key)
        values = {metric_key(k): _value(v, path, n, k) for k, v in rec.items()
                  if k not in SKIPPED and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if step is not None and values:
            records.append((step, values))
    return records
