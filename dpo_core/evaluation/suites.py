"""Benchmarks read from files: BLiMP-layout minimal-pair suites (good and bad sentences in turn),
TRL pairs JSON files, and HellaSwag-style multiple choice.

Suites are scored by a named protocol, stored next to every number:
- `whole-sentence` (the default) is lm-evaluation-harness's BLiMP request: an empty context
  becomes one prefix token (the tokenizer's BOS, its EOS when it has none), the continuation is
  `" " + sentence` (the harness's target delimiter) tokenized without special tokens, and every
  continuation token is scored. With `sum-logp` (the suite default) this is the harness's `acc`.
- `after-first-token` is how the lab scored suites before: the sentence tokenized alone (special
  tokens added, none for SmolLM2) and every token after the first scored, so a pair that differs
  in its first token is judged on the rest of the sentence only.

Multiple choice reports `acc_norm` beside the method's accuracy: the choice with the highest
summed log-probability per character of the choice wins (the harness's `acc_norm`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError
from ..formats import PromptFormat
from .scoring import (
    Encoded,
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
SUITE_PROTOCOLS = {
    "whole-sentence": "whole sentence after a BOS/EOS prefix token (lm-evaluation-harness)",
    "after-first-token": "tokens after each sentence's first (no prefix; the lab's old scoring)",
}
DEFAULT_SUITE_PROTOCOL = "whole-sentence"
DEFAULT_SUITE_METHOD = "sum-logp"  # the harness's BLiMP `acc` compares summed log-probabilities
TARGET_DELIMITER = " "  # what the harness puts before a continuation, an empty context's too


def check_protocol(protocol: str) -> None:
    if protocol not in SUITE_PROTOCOLS:
        raise ConfigError(f"Unknown suite protocol '{protocol}'.",
                          f"Use one of: {', '.join(SUITE_PROTOCOLS)} (default "
                          f"{DEFAULT_SUITE_PROTOCOL}).")


def prefix_token_id(tokenizer) -> int:
    """The token an empty context becomes: BOS, else EOS (lm-evaluation-harness's rule)."""
    for value in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    raise ConfigError("The tokenizer has neither a BOS nor an EOS token to start sentences with.",
                      "Score the suite with --protocol after-first-token.")


def encode_sentence(tokenizer, sentence: str, protocol: str = DEFAULT_SUITE_PROTOCOL) -> Encoded:
    """A suite sentence's token ids and first scored index under `protocol`."""
    if protocol == "whole-sentence":
        ids = tokenizer(TARGET_DELIMITER + sentence, add_special_tokens=False)["input_ids"]
        return (prefix_token_id(tokenizer), *ids), 1
    return encode_text(tokenizer, "", sentence, "full")


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


def suite_accuracy(model, tokenizer, folder: str | Path, method: Method = DEFAULT_SUITE_METHOD,
                   batch_size: int = 16, limit: int | None = None, seed: int = 0,
                   progress: Progress = no_progress,
                   protocol: str = DEFAULT_SUITE_PROTOCOL) -> dict:
    """Accuracy per file and overall: the good sentence must outscore the bad one.

    Each per-pair row's `item` is `file#k` (the k-th pair of that file), so two evaluations of
    one suite pair up row by row.
    """
    check_method(method, "full")
    check_protocol(protocol)
    if method == "implicit-reward":
        raise ConfigError("A suite scores single sentences; implicit-reward needs pairs.",
                          "Use mean-logp or sum-logp for a suite.")
    suite = read_suite(folder, limit)
    items, keys = [], []
    for name, pairs in suite.items():
        for k, (good, bad) in enumerate(pairs):
            items += [encode_sentence(tokenizer, good, protocol),
                      encode_sentence(tokenizer, bad, protocol)]
            keys.append((name, k))
    scored = [reduce_score(t, c, method) for t, c in score_encoded_pairs(model, tokenizer, items,
                                                                     batch_size, progress)]
    scores = list(zip(scored[0::2], scored[1::2], strict=True))
    files = {}
    for name in suite:
        mine = [s for s, (file, _) in zip(scores, keys, strict=True) if file == name]
        files[name] = {k: v for k, v in summarize_scores(mine, seed).items() if k != "per_pair"}
    overall = summarize_scores(scores, seed)
    for row, (name, k) in zip(overall["per_pair"], keys, strict=True):
        row["item"], row["file"] = f"{name}#{k}", name
    return {**overall, "method": method, "scope": "full", "protocol": protocol, "files": files}


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
    """Accuracy where the best-scoring choice wins (ties go to the first), and `acc_norm`:
    the best summed log-probability per character of the choice wins."""
    check_method(method, scope)
    encoded = []
    for i, item in enumerate(items):
        if not item.choices or not 0 <= item.answer < len(item.choices):
            raise DataError(f"Choice item {i} has {len(item.choices)} choices and answer "
                            f"{item.answer}.", "Give at least one choice and a valid answer index.")
        prompt_text = prompt_format.render_prompt(item.context, tokenizer)
        encoded += [encode_text(tokenizer, prompt_text, prompt_format.render_reply(c, tokenizer),
                                scope) for c in item.choices]
    raw = score_encoded(model, tokenizer, encoded, batch_size, progress)
    per_item, pos = [], 0
    for i, item in enumerate(items):
        mine = raw[pos:pos + len(item.choices)]
        pos += len(item.choices)
        scores = [reduce_score(t, c, method) for t, c in mine]
        norm = [t / max(len(choice), 1) for (t, _), choice in zip(mine, item.choices,
                                                                   strict=True)]
        best, best_norm = _best(scores), _best(norm)
        per_item.append({"index": i, "scores": scores, "predicted": best, "answer": item.answer,
                         "correct": best == item.answer, "norm_scores": norm,
                         "norm_predicted": best_norm, "norm_correct": best_norm == item.answer})
    correct = [row["correct"] for row in per_item]
    norm_correct = [row["norm_correct"] for row in per_item]
    low, high = bootstrap_ci(correct, seed)
    norm_low, norm_high = bootstrap_ci(norm_correct, seed)
    n = len(per_item)
    return {"accuracy": sum(correct) / n if n else 0.0, "ci_low": low, "ci_high": high, "n": n,
            "acc_norm": sum(norm_correct) / n if n else 0.0, "acc_norm_ci_low": norm_low,
            "acc_norm_ci_high": norm_high, "method": method, "scope": scope,
            "per_item": per_item}


def _best(scores: Sequence[float]) -> int:
    return max(range(len(scores)), key=lambda k: (scores[k], -k))


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
