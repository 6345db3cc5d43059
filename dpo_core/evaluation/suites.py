"""Benchmarks read from files: BLiMP-layout minimal-pair suites (good and bad sentences in turn),
TRL pairs JSON files, and HellaSwag-style multiple choice."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..formats import PromptFormat
from .scoring import (
    Method,
    Progress,
    Scope,
    check_method,
    encode_text,
    no_progress,
    reduce_score,
    score_encoded,
    score_encoded_pairs,
)
from .statistics import bootstrap_ci, summarize_scores

# TRL JSON files such as the HellaSwag noise sets concatenate prompt and reply as they are.
CONCAT_FORMAT = PromptFormat(kind="plain", template="{prompt}", separator="")


def read_suite(folder: str | Path, limit: int | None = None) -> dict[str, list[tuple[str, str]]]:
    """{file stem: [(good, bad), ...]} from a folder of .txt files alternating good/bad lines."""
    folder = Path(folder)
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise DataError(f"No .txt files in {folder}.",
                        "Point at a folder of BLiMP-layout files (good and bad lines alternate).")
    suite = {}
    for f in files:
        lines = [line.strip() for line in f.read_text(encoding="utf-8").splitlines()]
        lines = [line for line in lines if line]
        if len(lines) % 2:
            raise DataError(f"{f} has an odd number of sentences ({len(lines)}).",
                            "Each good sentence needs its bad partner on the next line.")
        pairs = list(zip(lines[0::2], lines[1::2], strict=False))
        suite[f.stem] = pairs[:limit] if limit else pairs
    return suite


def suite_accuracy(model, tokenizer, folder: str | Path, method: Method = "mean-logp",
                   batch_size: int = 16, limit: int | None = None, seed: int = 0,
                   progress: Progress = no_progress) -> dict:
    """Accuracy per file and overall: the good sentence must outscore the bad one (scope full)."""
    check_method(method, "full")
    suite = read_suite(folder, limit)
    items, keys = [], []
    for name, pairs in suite.items():
        for good, bad in pairs:
            items += [encode_text(tokenizer, "", good, "full"),
                      encode_text(tokenizer, "", bad, "full")]
            keys.append(name)
    scored = [reduce_score(t, c, method) for t, c in score_encoded_pairs(model, tokenizer, items,
                                                                     batch_size, progress)]
    scores = list(zip(scored[0::2], scored[1::2], strict=False))
    files = {}
    for name in suite:
        mine = [s for s, k in zip(scores, keys, strict=False) if k == name]
        files[name] = {k: v for k, v in summarize_scores(mine, seed).items() if k != "per_pair"}
    overall = summarize_scores(scores, seed)
    for i, row in enumerate(overall["per_pair"]):
        row["item"] = keys[i]
    return {**overall, "method": method, "scope": "full", "files": files}


@dataclass
class ChoiceItem:
    """A multiple-choice question: context, candidate continuations, index of the right one."""

    context: str
    choices: list[str]
    answer: int


def multiple_choice_accuracy(model, tokenizer, prompt_format: PromptFormat,
                             items: Sequence[ChoiceItem], method: Method = "mean-logp",
                             scope: Scope = "reply", batch_size: int = 16, seed: int = 0,
                             progress: Progress = no_progress) -> dict:
    """Accuracy where the best-scoring choice wins (ties go to the first)."""
    check_method(method, scope)
    encoded = []
    for i, item in enumerate(items):
        if not item.choices or not 0 <= item.answer < len(item.choices):
            raise DataError(f"Choice item {i} has {len(item.choices)} choices and answer "
                            f"{item.answer}.", "Give at least one choice and a valid answer index.")
        prompt_text = prompt_format.render_prompt(item.context, tokenizer)
        encoded += [encode_text(tokenizer, prompt_text, prompt_format.render_reply(c, tokenizer),
                                scope) for c in item.choices]
    flat = [reduce_score(t, c, method) for t, c in score_encoded(model, tokenizer, encoded,
                                                             batch_size, progress)]
    per_item, pos = [], 0
    for i, item in enumerate(items):
        scores = flat[pos:pos + len(item.choices)]
        pos += len(item.choices)
        best = max(range(len(scores)), key=lambda k: (scores[k], -k))
        per_item.append({"index": i, "scores": scores, "predicted": best, "answer": item.answer,
                         "correct": best == item.answer})
    correct = [row["correct"] for row in per_item]
    low, high = bootstrap_ci(correct, seed)
    n = len(per_item)
    return {"accuracy": sum(correct) / n if n else 0.0, "ci_low": low, "ci_high": high, "n": n,
            "method": method, "scope": scope, "per_item": per_item}


def read_pairs_json(path: str | Path) -> list[dict]:
    """A TRL JSON file: a list of {prompt, chosen, rejected} records."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"Cannot read {path} as JSON: {exc}.",
                        "Give a JSON list of {prompt, chosen, rejected} objects.") from exc
    for i, rec in enumerate(records if isinstance(records, list) else [None]):
        if not isinstance(rec, dict) or not all(k in rec for k in ("prompt", "chosen", "rejected")):
            raise DataError(f"{path} record {i} lacks prompt/chosen/rejected.",
                            "Give a JSON list of {prompt, chosen, rejected} objects.")
    return records


_CHOICE_LINE = re.compile(r'^(\d+): "(.*)"$')


def hellaswag_choices(records: Sequence[dict]) -> list[ChoiceItem]:
    """HellaSwag-noise pairs as multiple choice: the last Context block, answer = chosen index."""
    items = []
    for i, rec in enumerate(records):
        block = rec["prompt"].rsplit("Context: ", 1)[-1]
        lines = block.strip().splitlines()
        if not lines or not lines[0].startswith('"'):
            raise DataError(f"Record {i} has no 'Context: \"...\"' block.",
                            "Use the HellaSwag-noise layout (Context, numbered choices).")
        context = lines[0].strip().strip('"')
        choices = [m.group(2) for m in map(_CHOICE_LINE.match, lines[1:]) if m]
        try:
            answer = int(str(rec["chosen"]).strip())
        except ValueError as exc:
            raise DataError(f"Record {i}: chosen '{rec['chosen']}' is not a choice number.",
                            "chosen must be the index of the right choice, e.g. ' 2'.") from exc
        items.append(ChoiceItem(context, choices, answer))
    return items
