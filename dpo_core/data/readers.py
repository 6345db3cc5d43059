"""Reading the files users have, one record at a time: CSV/TSV, a JSON list, JSON Lines,
Parquet and hub datasets. Nothing holds the whole file: peak memory stays a few chunks however
large the file is, and progress is reported as bytes read.

Refusals name the file, the row (or line) and the field, and the fix: text that is not in the
encoding given (with a hint of what it may be, never a silent guess), JSON nested too deep,
duplicate keys or columns, cells over the import limit.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import DataError
from .shapes import SHAPES, RowError

CHUNK = 1 << 18  # characters (or bytes) read at a time
MAX_ROW_CHARS = 256 << 20  # one JSON row longer than this is refused rather than buffered
Progress = Callable[[float, str], None]
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))
HUB_HOST = ("huggingface.co", 443)
HUB_PROBE_S = 1.0


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that ignores what it is told."""


# -- encodings ------------------------------------------------------------------------------
def file_encoding(path: Path, encoding: str | None) -> str:
    """The encoding to read `path` with: the one given, else what its byte-order mark says,
    else UTF-8. The whole file is checked first, so a wrong one is refused with the byte, the
    line and a hint, never read as mangled text."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if encoding is None:
        encoding = next((name for bom, name in BOMS if head.startswith(bom)), "utf-8-sig")
        zeros = head.count(b"\x00")
        if encoding == "utf-8-sig" and zeros > len(head) // 4:
            # valid UTF-8 byte by byte, but text this full of NULs is UTF-16/32 without a mark
            raise DataError(f"{path} is not UTF-8 text: {zeros} of its first "
                            f"{len(head)} bytes are 0. It looks like UTF-16 without a byte-order "
                            "mark: try --encoding utf-16-le (or utf-16-be).",
                            "Pass the file's encoding (--encoding, or Encoding in the Import "
                            "form), or save it as UTF-8.")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"{path}: unknown encoding '{encoding}'.", "Use a Python codec name "
                        "such as utf-8, utf-16, cp1252 or latin-1.") from None
    _check_decodes(path, encoding)
    return encoding


def _check_decodes(path: Path, encoding: str) -> None:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    done, lines = 0, 1
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                start = max(0, exc.start)
                line = lines + chunk[:start].count(b"\n")
                bad = chunk[start:start + 1]
                raise DataError(f"{path} is not {_name(encoding)} text: byte {done + start} "
                                f"(0x{bad.hex().upper()}, line {line}) cannot be decoded."
                                f"{_hint(chunk, start)}",
                                "Pass the file's encoding (--encoding, or Encoding in the Import "
                                "form), or save it as UTF-8 (iconv, or your editor's 'save with "
                                "encoding').") from None
            done += len(chunk)
            lines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataError(f"{path} ends in the middle of a {_name(encoding)} character.",
                            "Check that the file was saved completely, or pass its encoding "
                            "(--encoding).") from None


def _name(encoding: str) -> str:
    return "UTF-8" if encoding.replace("_", "-").lower() in ("utf-8-sig", "utf-8", "utf8") \
        else encoding


def _hint(chunk: bytes, start: int) -> str:
    """What the bytes around a bad one would read as in the usual other encodings."""
    if chunk[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or chunk[1:2] == b"\x00":
        return " It looks like UTF-16 (every other byte is 0): try --encoding utf-16."
    around = chunk[max(0, start - 12):start + 12]
    readings = []
    for name in ("cp1252", "latin-1"):
        try:
            readings.append(f"{name}: {around.decode(name)!r}")
        except UnicodeDecodeError:
            continue
    return (" In another encoding it would read " + " or ".join(readings) + "; check which "
            "is right before choosing one.") if readings else ""


class Counted(io.RawIOBase):
    """A binary file that counts the bytes read, for progress."""

    def __init__(self, fh):
        self.fh, self.read_bytes = fh, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.fh.readinto(buffer)
        self.read_bytes += n or 0
        return n

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.read_bytes = self.fh.seek(offset, whence)
        return self.read_bytes

    def tell(self) -> int:
        return self.fh.tell()

    def close(self) -> None:
        self.fh.close()
        super().close()


def text_stream(path: Path, encoding: str) -> tuple[io.TextIOWrapper, Counted]:
    """The file as text (newlines as they are: CSV and JSON Lines handle line ends) and the
    byte counter under it."""
    raw = Counted(path.open("rb"))
    return io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, newline=""), raw


# -- JSON -----------------------------------------------------------------------------------
def _no_duplicate_keys(pairs: list[tuple]) -> dict:
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)


def decode_record(text: str, where: str, number: int, start: int = 0,
                  lines_before: int = 0) -> tuple[object, int]:
    """One JSON value from `text` at `start`: (value, end). Errors name the row (and the line of
    the file: `lines_before` is how many lines precede `text`)."""
    try:
        return _DECODER.raw_decode(text, start)
    except _DuplicateKey as exc:
        raise RowError(where, number, exc.key, "the key appears twice in one object (the "
                       "second would silently win).", "Keep one of them.") from None
    except RecursionError:
        raise RowError(where, number, "", "the JSON is nested too deeply to read (thousands "
                       "of levels).", "Flatten the row, or remove it.") from None
    except json.JSONDecodeError as exc:
        raise RowError(where, number, "", f"not valid JSON ({exc.msg}, line "
                       f"{lines_before + exc.lineno}, column {exc.colno}).",
                       "Each row must be one JSON object.") from None


def json_lines(stream, label: str) -> Iterator[tuple[int, object]]:
    """(line number, value) of each non-blank line; a bad line gives its RowError as the value
    (the reader goes on: the importer refuses the file or skips the row)."""
    for number, line in enumerate(_lines(stream), 1):  # only \n ends a line: \x85 is text
        if not line.strip():
            continue
        where = f"{label} row {number}"
        try:
            value, end = decode_record(line, where, number, len(line) - len(line.lstrip()),
                                       number - 1)
            if line[end:].strip():
                raise RowError(where, number, "", "holds more than one JSON value.",
                               "Put one JSON object per line.")
        except RowError as exc:
            value = exc
        yield number, value


def _lines(stream) -> Iterator[str]:
    rest = ""
    while chunk := stream.read(CHUNK):
        parts = (rest + chunk).split("\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


_SPACE = re.compile(r"[\s,]*")  # between elements (a stray comma is forgiven)


def json_array(stream, label: str) -> Iterator[tuple[int, object]]:
    """(position, value) of each element of a top-level JSON list, read in chunks."""
    reader = _ArrayReader(stream, label)
    reader.open()
    number = 0
    while reader.skip_separators():
        number += 1
        yield number, reader.element(number)
    if number == 0:
        raise DataError(f"{label} holds an empty list.",
                        'Put the pairs in the list: [{"prompt": ..., "chosen": ..., '
                        '"rejected": ...}, ...].')


class _ArrayReader:
    """A JSON list read a chunk at a time; only the unread part of the file is kept."""

    def __init__(self, stream, label: str):
        self.stream, self.label = stream, label
        self.buffer, self.pos, self.eof, self.lines_before = "", 0, False, 0

    def more(self) -> bool:
        chunk = self.stream.read(CHUNK)
        self.eof = not chunk
        self.buffer += chunk
        return bool(chunk)

    def open(self) -> None:
        while not self.buffer.strip() and self.more():
            pass
        start = len(self.buffer) - len(self.buffer.lstrip())
        if not self.buffer.startswith("[", start):
            _refuse_top_level(self.buffer[start:], self.label, self.stream)
        self.pos = start + 1

    def skip_separators(self) -> bool:
        """Past commas and blanks: True at the next element, False at the closing ]."""
        while True:
            self.pos = _SPACE.match(self.buffer, self.pos).end()
            if self.pos < len(self.buffer) or not self.more():
                break
        if self.buffer.startswith("]", self.pos):
            return False
        if self.pos >= len(self.buffer):
            raise DataError(f"{self.label} is not valid JSON: the list is not closed with ].",
                            "Check that the file was saved completely.")
        return True

    def element(self, number: int):
        """The element at the cursor; a cut one is read on (up to a sane size) and retried."""
        where = f"{self.label} row {number}"
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buffer, self.pos)
                break
            except json.JSONDecodeError:
                if self.eof or len(self.buffer) - self.pos > MAX_ROW_CHARS or not self.more():
                    decode_record(self.buffer, where, number, self.pos, self.lines_before)
                    raise  # decode_record raised already; never reached
            except (_DuplicateKey, RecursionError):
                decode_record(self.buffer, where, number, self.pos, self.lines_before)
                raise
        self.lines_before += self.buffer.count("\n", 0, end)
        self.buffer, self.pos = self.buffer[end:], 0
        return value


def _refuse_top_level(text: str, label: str, stream) -> None:
    try:
        value = json.loads(text + stream.read())
    except (ValueError, RecursionError):
        raise DataError(f"{label} is not valid JSON (line 1): it does not start with a list.",
                        f"Write the rows as a JSON list [ ... ] or as JSON Lines. {SHAPES}"
                        ) from None
    raise DataError(f"{label} holds a JSON {type(value).__name__}, not a list of rows.",
                    f"Wrap the rows in [ ... ]. {SHAPES}")


# -- CSV ------------------------------------------------------------------------------------
def csv_rows(stream, label: str, delimiter: str, limit: int) -> Iterator[tuple[int, list[str]]]:
    """(row number under the header, cells) of a CSV/TSV; the header first as row 0."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, limit))  # a long cell is refused by our limit, with its row
    reader = csv.reader(stream, delimiter=delimiter)
    number = -1
    try:
        for cells in reader:
            if not cells:
                continue
            number += 1
            yield number, cells
    except csv.Error as exc:
        raise RowError(f"{label} row {number + 1} (line {reader.line_num})", number + 1, "",
                       f"not a readable CSV row: {exc}.",
                       "Quote cells that contain the delimiter, quotes or newlines.") from None
    finally:
        csv.field_size_limit(old)


def delimiter_of(path: Path, first_line: str) -> str:
    """Tab for .tsv/.tab files; otherwise the separator the header line uses."""
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] and not counts[","] else ","


def check_header(header: list[str], label: str) -> list[str]:
    """The header's column names, stripped; a name twice is refused (naming both columns)."""
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen and name:
            raise DataError(f"{label}: the column '{name}' appears twice in the header (columns "
                            f"{seen[name] + 1} and {i + 1}); the second would silently win.",
                            "Rename or remove one of them.")
        seen[name] = i
    return header


# -- Parquet and the hub ----------------------------------------------------------------------
def parquet_records(path: Path, progress: Progress) -> Iterator[tuple[int, dict]]:
    """(row number, record) of a Parquet file, read a batch of rows at a time."""
    import pyarrow.parquet as pq

    try:
        fh = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} cannot be read as Parquet: {exc}.", SHAPES) from exc
    total, number = max(1, fh.metadata.num_rows), 0
    if fh.metadata.num_rows == 0:
        raise DataError(f"{path} has no rows.", SHAPES)
    for batch in fh.iter_batches(batch_size=2048):
        for record in batch.to_pylist():
            number += 1
            yield number, record
        progress(number / total, f"read {number:,} of {total:,} rows")


def hub_records(name: str, split: str, reachable: Callable[[], bool] | None = None
                ) -> Iterator[tuple[int, dict]]:
    """Rows of a hub dataset. Offline (the hub does not answer within a second) it fails at
    once with the offline fix, instead of after the hub client's retries."""
    import os

    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes")
                  for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not offline and not (reachable or hub_reachable)():
        raise DataError(f"Cannot load hub dataset '{name}': huggingface.co did not answer "
                        f"within {HUB_PROBE_S:.0f} s (offline?).",
                        "Download the data where there is network and import the file "
                        "(`python -m dpo_core data import FILE`); if the dataset is in your "
                        "hub cache, set HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 to load it "
                        "from there.")
    try:
        from datasets import load_dataset

        data = load_dataset(name, split=split)
    except Exception as exc:  # unknown id, missing split, not cached offline: all end here
        raise DataError(f"Cannot load hub dataset '{name}' (split '{split}'): "
                        f"{type(exc).__name__}: {str(exc)[:200]}.",
                        "Check the id and split, and that the Hugging Face hub is reachable; "
                        "offline, download the data and import the file instead.") from exc
    yield from enumerate(data, 1)


def hub_reachable(timeout: float = HUB_PROBE_S) -> bool:
    """Whether huggingface.co accepts a connection within `timeout` (name lookup included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(HUB_HOST, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # a stuck DNS lookup is left behind
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])
