"""The record shapes preference data comes in, turned into pairs: standard (prompt, chosen,
rejected), conversational (message lists, kept as lists), implicit prompt (chosen and rejected
share it), system + input, and multiple choice; with the column mapping users give.

A record becomes its rows one at a time (`RowMaker.rows`), so an importer can stream a file and
report a bad row without holding the rest. Columns a shape does not use are kept in the pair's
metadata under "columns" (scores, ratings, ids), in their order, and written back on export.
"""

from __future__ import annotations

import json
import random
import re

from ..errors import DataError
from ..formats import Messages, as_messages
from ..store import dumps
from .datasets import MESSAGE_BITS

SHAPES = (
    "Accepted shapes: CHILDES minimal-pair CSV (pospair, negpair with '*MOT: ...<TAB>*CHI: ...'); "
    "rows with prompt, chosen, rejected (text or lists of {role, content} messages) as JSON list, "
    "JSON Lines, Parquet or CSV; chosen + rejected only (implicit prompt); system + input + "
    "chosen + rejected; context + choices + answer (multiple choice); any columns with "
    "--map prompt=COL,chosen=COL,rejected=COL; or a hub dataset id."
)
TURN_TAG = re.compile(r"(?:^|\n)[^\n:]{1,40}:")

# prompt, chosen, rejected as stored (conversations as JSON text), meta_json, message_fields
Row = tuple[str, str, str, str, int]


class RowError(DataError):
    """A bad row: the message names the file, row and field; `row`, `field` and `reason` say
    the same for a report (import with bad rows skipped)."""

    def __init__(self, where: str, row: int, field: str, reason: str, fix: str):
        super().__init__(f"{where}: {reason}" if not field else
                         f"{where}, column {field}: {reason}", fix)
        self.row, self.field, self.reason = row, field, reason


def mapped(record: dict, mapping: dict[str, str] | None) -> dict:
    """A record with the mapped columns under their pair names (the source names dropped)."""
    if not mapping:
        return record
    out = {k: v for k, v in record.items() if k not in mapping.values()}
    return {**out, **{target: record.get(column) for target, column in mapping.items()}}


def check_mapping(first: dict, mapping: dict[str, str] | None, label: str) -> None:
    """Every mapped column must be a column of the first record."""
    for target, column in (mapping or {}).items():
        if column not in first:
            raise DataError(f"{label}: the mapping {target}={column} names a column that is "
                            f"not there (columns: {', '.join(sorted(map(str, first)))}).",
                            "Fix --map to use existing column names.")


def detect_shape(first: dict, label: str) -> str:
    """The shape of a file's records, told from its first one (missing columns named)."""
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


def prompt_format_of(shape: str) -> dict:
    """The dataset's prompt format: text pairs render as plain text; conversations through the
    chat template of the model they are used with (its own format), system turns included."""
    if shape == "multiple-choice":
        return {"kind": "plain", "template": "{prompt}"}
    if shape in ("conversational", "system"):
        return {}
    return {"kind": "plain"}


class RowMaker:
    """Turns records of one shape into rows, naming the row and field of anything wrong."""

    def __init__(self, shape: str, label: str, *, choices: str = "each", seed: int = 0,
                 template: str = "{context}"):
        self.shape, self.label = shape, label
        self.choices, self.template = choices, template
        self.rng = random.Random(seed)

    def rows(self, record: dict, number: int) -> list[Row]:
        where = f"{self.label} row {number}"
        if self.shape == "multiple-choice":
            return self._from_choices(record, number, where)
        if self.shape == "implicit":
            prompt, chosen, rejected = _split_prompt(record, number, where)
            used = ("chosen", "rejected")
        elif self.shape == "system":
            prompt, chosen, rejected, used = _system_row(record, number, where)
        else:
            prompt, chosen, rejected = (_field(record, k, number, where) for k in
                                        ("prompt", "chosen", "rejected"))
            if isinstance(chosen, list) and isinstance(rejected, list):
                prompt, chosen, rejected = _lift_prompt(prompt, chosen, rejected, number, where)
            used = ("prompt", "chosen", "rejected")
        if chosen == rejected:
            raise RowError(where, number, "", f"chosen and rejected are identical "
                           f"({str(chosen)[:60]!r}).",
                           "Remove the row or fix one side; a pair must differ.")
        extra = {str(k): v for k, v in record.items() if k not in used}
        meta = _meta(extra, number, where) if extra else "{}"
        return [_row(prompt, chosen, rejected, meta)]

    def _from_choices(self, record: dict, number: int, where: str) -> list[Row]:
        """Multiple choice: the right choice against each wrong one, or one sampled wrong one."""
        context = record.get("context", record.get("ctx"))
        options = record.get("choices", record.get("endings"))
        answer = record.get("answer", record.get("label"))
        if not isinstance(context, str) or not isinstance(options, list) or len(options) < 2:
            raise RowError(where, number, "", "needs context text and a list of at least two "
                           "choices.", SHAPES)
        try:
            answer = int(answer)
        except (TypeError, ValueError):
            raise RowError(where, number, "answer", f"{answer!r} is not a choice index.",
                           SHAPES) from None
        if not 0 <= answer < len(options):
            raise RowError(where, number, "answer", f"index {answer} is outside the "
                           f"{len(options)} choices.", "Answers count from 0.")
        prompt = self.template.format(context=context, choices=options)
        wrong = [o for i, o in enumerate(options) if i != answer]
        if self.choices == "sample":
            wrong = [self.rng.choice(wrong)]
        meta = dumps({"answer": answer})
        return [_row(prompt, str(options[answer]), str(w), meta) for w in wrong]


def _meta(extra: dict, number: int, where: str) -> str:
    """The extra columns as stored metadata; values JSON cannot hold (dates, bytes) are kept as
    their text, and text that cannot be stored is refused naming its column."""
    text = json.dumps({"columns": extra}, ensure_ascii=False, separators=(",", ":"),
                      default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        for column, value in extra.items():
            try:
                json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RowError(where, number, column, "holds a lone surrogate "
                               f"({exc.object[exc.start]!a}), which is not text.",
                               "Fix the escape in the file, or remove the row.") from None
    return text


def _row(prompt, chosen, rejected, meta: str) -> Row:
    """A checked row as stored: conversations (already Messages, see _field) as their JSON."""
    texts, bits = [], 0
    for name, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        is_messages = isinstance(value, list)
        texts.append(dumps(value) if is_messages else value)
        bits |= MESSAGE_BITS[name] * is_messages
    return (*texts, meta, bits)


def _field(record: dict, key: str, number: int, where: str, allow_empty: bool = False):
    """A text or a conversation, checked: present, of the right type, not empty, encodable."""
    if key not in record:
        raise RowError(where, number, key, "the column is missing.",
                       f"Add '{key}' to that row: every row needs the columns the first one "
                       "has.")
    value = record[key]
    if isinstance(value, str) and (as_list := as_messages(value)) is not None:
        value = as_list  # a conversation written as JSON text (a CSV cell, older exports)
    if isinstance(value, list):
        return _messages(value, key, number, where)
    if not isinstance(value, str):
        raise RowError(where, number, key, f"expected text, got {type(value).__name__} "
                       f"({str(value)[:40]!r}).",
                       "Every prompt/chosen/rejected must be text or a list of messages.")
    if not allow_empty and not value.strip():
        raise RowError(where, number, key, "the field is empty.", "Fill it in or remove the row.")
    _check_encodable(value, key, number, where)
    return value


def _check_encodable(text: str, key: str, number: int, where: str) -> None:
    """Lone surrogates (half of a UTF-16 pair, e.g. from a broken JSON escape) cannot be stored."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RowError(where, number, key, f"character {exc.start + 1} is a lone surrogate "
                       f"({text[exc.start]!a}), which is not text.",
                       "Fix the escape in the file (a \\ud800-\\udfff escape needs its pair), "
                       "or remove the row.") from None


def _messages(value: list, key: str, number: int, where: str) -> Messages:
    if not value:
        raise RowError(where, number, key, "the message list is empty.", SHAPES)
    for message in value:
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise RowError(where, number, key, "a message is not {role, content} text "
                           f"({str(message)[:60]!r}).", SHAPES)
        _check_encodable(message["content"], key, number, where)
    return Messages(value)


def _same_turns(a: list[dict], b: list[dict]) -> bool:
    return [(m["role"], m["content"].strip()) for m in a] == \
        [(m["role"], m["content"].strip()) for m in b]


def _lift_prompt(prompt, chosen: list, rejected: list, number: int, where: str):
    """Turns chosen and rejected both start with (the prompt repeated, as many hub sets do)
    become the prompt, every turn kept; the replies keep what follows."""
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        return prompt, chosen, rejected
    lead = Messages(chosen[:n])
    asked = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if not (_same_turns(lead[:len(asked)], asked) or _same_turns(lead[-len(asked):], asked)):
        raise RowError(where, number, "chosen", f"chosen and rejected both start with {n} "
                       "message(s) that are not the prompt, so it is unclear which turns the "
                       "replies answer.", "Drop the repeated turns from chosen and rejected, "
                       "or make prompt those turns.")
    return lead, Messages(chosen[n:]), Messages(rejected[n:])


def _system_row(record: dict, number: int, where: str):
    """system + input (or question) + chosen + rejected. With a system column the row becomes a
    conversation whose system turn is that text (none when it is empty), so every rendering
    applies it; without one, a text pair."""
    question = "input" if "input" in record else "question"
    prompt = _field(record, question, number, where)
    chosen, rejected = (_field(record, k, number, where) for k in ("chosen", "rejected"))
    if "system" not in record:
        return prompt, chosen, rejected, (question, "chosen", "rejected")
    system = _field(record, "system", number, where, allow_empty=True)
    if isinstance(system, list):
        raise RowError(where, number, "system", "expected text, got a message list.", SHAPES)
    turns = [{"role": "system", "content": system}] if system.strip() else []
    turns.append({"role": "user", "content": prompt} if isinstance(prompt, str) else prompt)
    reply = lambda r: r if isinstance(r, list) else [{"role": "assistant", "content": r}]  # noqa: E731
    return (Messages(turns), Messages(reply(chosen)), Messages(reply(rejected)),
            ("system", question, "chosen", "rejected"))


def _split_prompt(record: dict, number: int, where: str):
    """The shared start of chosen and rejected becomes the prompt (cut at a turn boundary)."""
    chosen, rejected = record.get("chosen"), record.get("rejected")
    if isinstance(chosen, list) and isinstance(rejected, list):
        chosen = _messages(chosen, "chosen", number, where)
        rejected = _messages(rejected, "rejected", number, where)
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        if n == 0:
            raise RowError(where, number, "", "chosen and rejected share no leading messages, "
                           "so no prompt can be taken from them.", SHAPES)
        return Messages(chosen[:n]), Messages(chosen[n:]), Messages(rejected[n:])
    chosen = _field(record, "chosen", number, where)
    rejected = _field(record, "rejected", number, where)
    common = len(_common_prefix(chosen, rejected))
    tags = [m.end() for m in TURN_TAG.finditer(chosen[:common])]
    cut = tags[-1] if tags else chosen.rfind(" ", 0, common) + 1
    if cut <= 0 or not chosen[:cut].strip():
        raise RowError(where, number, "", "chosen and rejected share no prompt (no common "
                       "start ending at a turn boundary).", f"Add a prompt column. {SHAPES}")
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]
