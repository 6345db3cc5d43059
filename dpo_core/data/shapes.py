"""The record shapes preference data comes in, turned into pairs: standard (prompt, chosen,
rejected), conversational (message lists), implicit prompt (chosen and rejected share it),
system + input, and multiple choice; with the column mapping users give."""

from __future__ import annotations

import random
import re

from ..errors import DataError
from ..store import dumps

SHAPES = (
    "Accepted shapes: CHILDES minimal-pair CSV (pospair, negpair with '*MOT: ...<TAB>*CHI: ...'); "
    "rows with prompt, chosen, rejected (text or lists of {role, content} messages) as JSON list, "
    "JSON Lines, Parquet or CSV; chosen + rejected only (implicit prompt); system + input + "
    "chosen + rejected; context + choices + answer (multiple choice); any columns with "
    "--map prompt=COL,chosen=COL,rejected=COL; or a hub dataset id."
)
TURN_TAG = re.compile(r"(?:^|\n)[^\n:]{1,40}:")

Row = tuple[str, str, str, str]  # prompt, chosen, rejected, meta_json


def apply_mapping(records: list[dict], mapping: dict[str, str] | None, label: str) -> list:
    if not mapping:
        return records
    available = set(records[0])
    for target, column in mapping.items():
        if column not in available:
            raise DataError(f"{label}: the mapping {target}={column} names a column that is "
                            f"not there (columns: {', '.join(sorted(map(str, available)))}).",
                            "Fix --map to use existing column names.")
    return [{**r, **{t: r.get(c) for t, c in mapping.items()}} for r in records]


def detect_shape(first: dict, label: str) -> str:
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


def convert(records: list[dict], shape: str, label: str, **options) -> tuple[list[Row], dict]:
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
