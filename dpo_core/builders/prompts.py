"""Prompts for a pair build: from a dataset, a JSON list or a text file (long conversations split
into one row per teacher turn), and the dataset's speaker-tag shape for generated replies."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.datasets import Pair, get_dataset, iter_pairs
from ..errors import DataError
from ..formats import SPEAKER_TAG, leading_tag, strip_tag
from ..store import Store
from .config import GenerateConfig


@dataclass
class SourceRow:
    """A prompt and, where known, its original reply (the chosen of a source pair)."""

    prompt: str
    reply: str = ""
    other: str = ""  # the source pair's rejected reply, if any
    origin: str = ""


def split_conversation(messages: Sequence, teacher: str = "assistant",
                       as_text: bool = False) -> list[SourceRow]:
    """Each teacher turn becomes a row: prompt = the conversation before it, reply = the turn.

    `messages` are {role, content} dicts or (speaker, text) tuples. The prompt is a JSON message
    list (teacher turns as `assistant`, the others as `user`), or `Speaker: text` lines with
    `as_text=True`. A teacher turn with nothing before it gives no row.
    """
    turns = [(m["role"], m["content"]) if isinstance(m, dict) else (m[0], m[1])
             for m in messages]
    rows = []
    for i, (speaker, text) in enumerate(turns):
        if speaker != teacher or i == 0:
            continue
        before = turns[:i]
        if as_text:
            prompt = "\n".join(f"{s}: {t}" for s, t in before)
        elif len(before) == 1 and before[0][0] != teacher:
            prompt = before[0][1]
        else:
            prompt = json.dumps([{"role": "assistant" if s == teacher else "user", "content": t}
                                 for s, t in before], ensure_ascii=False)
        rows.append(SourceRow(prompt, text, origin=f"turn {i}"))
    return rows


def load_prompts(store: Store, cfg: GenerateConfig) -> list[SourceRow]:
    """The build's prompts in a fixed order (dataset id order, file order)."""
    if cfg.source_dataset:
        ds = get_dataset(store, cfg.source_dataset)
        rows = [SourceRow(p.prompt, p.chosen, p.rejected, f"pair {p.id}")
                for p in iter_pairs(store, ds.id, cfg.source_split or None)]
    else:
        rows = read_prompts_file(cfg.prompts_file)
    if cfg.limit:
        rows = rows[:cfg.limit]
    if not rows:
        raise DataError(f"No prompts found in {cfg.source_dataset or cfg.prompts_file}.",
                        "Pick a dataset (and split) with pairs, or a file with prompts.")
    if cfg.builder in ("teacher", "weak") and not all(r.reply for r in rows):
        missing = next(i for i, r in enumerate(rows) if not r.reply)
        raise DataError(f"Prompt {missing + 1} has no known reply; the {cfg.builder} builder "
                        "needs one per prompt.", "Use a dataset, a JSON file whose entries have "
                        "'reply' (or 'conversation'), or the best-of-n builder.")
    return rows


def read_prompts_file(path: str | Path) -> list[SourceRow]:
    """Prompts from .json ({context, student_message[, reply]} or {conversation}) or .txt."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Prompts file {path} does not exist.",
                        "Pass a .json list of {context, student_message} objects or a .txt file.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json":
        return [SourceRow(line.strip(), origin=f"line {i}")
                for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}.", "Fix the file, or use .txt.") from exc
    if not isinstance(items, list):
        raise DataError(f"{path} holds a {type(items).__name__}, not a list.",
                        "Write a JSON list of {context, student_message} objects.")
    rows: list[SourceRow] = []
    for i, item in enumerate(items):
        rows += _json_rows(item, i, path)
    return rows


def _json_rows(item, i: int, path: Path) -> list[SourceRow]:
    if isinstance(item, str):
        return [SourceRow(item, origin=f"item {i}")]
    if not isinstance(item, dict):
        raise DataError(f"{path}, item {i}: a {type(item).__name__}.",
                        "Each item is {context, student_message} or {conversation: [...]}.")
    if "conversation" in item:
        rows = split_conversation(item["conversation"], item.get("teacher", "assistant"))
        return [replace(r, origin=f"item {i} {r.origin}") for r in rows]
    message = item.get("student_message") or item.get("prompt")
    if not message:
        raise DataError(f"{path}, item {i}: no 'student_message'.",
                        "Each item needs student_message (and optional context, reply).")
    context = item.get("context") or ""
    if isinstance(context, list):  # history as messages: keep it conversational
        msgs = [{"role": m.get("role", "user"), "content": m.get("content", "")}
                if isinstance(m, dict) else {"role": "user", "content": str(m)} for m in context]
        prompt = json.dumps([*msgs, {"role": "user", "content": message}], ensure_ascii=False)
    else:
        prompt = f"{context}\n{message}".strip()
    reply = item.get("reply") or item.get("chosen") or ""
    return [SourceRow(prompt, reply, item.get("rejected") or "", origin=f"item {i}")]


# ---------------------------------------------------------------------------------------
# Dataset format: speaker tags
# ---------------------------------------------------------------------------------------
def source_tag(rows: Sequence[SourceRow]) -> str | None:
    """The speaker tag most known replies start with (e.g. *CHI:), if at least half carry one."""
    replies = [r.reply for r in rows if r.reply] + [r.other for r in rows if r.other]
    if not replies:
        return None
    tag, count = Counter(leading_tag(t) for t in replies).most_common(1)[0]
    return tag if tag and count * 2 >= len(replies) else None


def expected_tag(cfg: GenerateConfig, rows: Sequence[SourceRow]) -> str | None:
    if cfg.speaker_tag == "none":
        return None
    if cfg.speaker_tag == "auto":
        return source_tag(rows)
    return cfg.speaker_tag


def to_dataset_format(reply: str, tag: str | None) -> str:
    """A generated reply in the dataset's shape: the speaker tag in front, exactly once."""
    text = " ".join(reply.split())
    if not tag:
        return text
    while leading_tag(text) == tag:
        text = strip_tag(text)
    return f"{tag} {text}".strip()


def check_pair(pair: Pair, tag: str | None) -> Pair:
    """Flag a pair before saving: replies missing the dataset's speaker tag, empty or equal."""
    flags = set(pair.flags)
    for reply in (pair.chosen, pair.rejected):
        if tag and leading_tag(reply) != tag:
            flags.add("speaker-tag")
        if not SPEAKER_TAG.sub("", reply).strip():
            flags.add("empty")
    if pair.chosen.strip() == pair.rejected.strip():
        flags.add("identical")
    pair.flags = sorted(flags)
    return pair
