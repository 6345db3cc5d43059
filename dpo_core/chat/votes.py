"""Votes: a chat preference becomes a pair in a dataset (the prompt with the chat's history, in
the run's format), and every vote is kept. A preference between two identical answers is kept as
a vote but never becomes a pair (it teaches nothing). Votes a public Space collected import as a
dataset whose pairs are flagged `unreviewed`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..access import require_owner
from ..data.datasets import Pair, create_dataset, get_dataset, insert_pair, insert_pairs
from ..errors import ConfigError, DataError, NotFoundError
from ..formats import PromptFormat
from ..store import Store, dumps, now
from .sampling import SamplingSettings

Verdict = Literal["left", "right", "tie", "both_bad"]
VERDICTS = ("left", "right", "tie", "both_bad")
History = tuple[tuple[str, str], ...] | list[tuple[str, str]]

IDENTICAL_ANSWERS = ("Both answers are the same text, so preferring one teaches the model "
                     "nothing: the vote is kept, but no pair was written.")


@dataclass
class VoteResult:
    vote_id: int
    pair_id: int | None
    dataset: str | None
    note: str | None = None  # why a preference did not become a pair


def record_vote(store: Store, left_spec: str, right_spec: str, prompt: str, left_text: str,
                right_text: str, verdict: Verdict, *, dataset: str | None = None,
                prompt_format: PromptFormat | None = None,
                settings: SamplingSettings | None = None, edited_better: str | None = None,
                history: History = ()) -> VoteResult:
    """Store a vote; left/right also write a `chat` pair (prompt incl. history) into `dataset`.

    `prompt` is the last user message and `history` the earlier (user, reply) turns of the side
    the user preferred; the pair's prompt is both, in the run's format.
    """
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict is '{verdict}'.", f"Use one of: {', '.join(VERDICTS)}.")
    fmt = prompt_format or PromptFormat()
    full_prompt = fmt.history_as_prompt(list(history), prompt)
    meta = {"left": left_spec, "right": right_spec, "prompt_format": fmt.to_dict(),
            "settings": settings.to_dict() if settings else {}}
    pair_id = ds_name = note = None
    if verdict in ("left", "right") and _same_answers(left_text, right_text, verdict,
                                                      edited_better):
        note = IDENTICAL_ANSWERS
    with store.write() as conn:
        if verdict in ("left", "right") and note is None:
            if not dataset or not dataset.strip():
                raise ConfigError("A vote with a preference needs a dataset to write the pair to.",
                                  "Pick a dataset, or type a new name.")
            pair_id, ds_name = _write_pair(store, dataset.strip(), fmt, full_prompt, left_text,
                                           right_text, verdict, edited_better, meta)
        cur = conn.execute(
            "INSERT INTO votes(at, left_spec, right_spec, prompt, left_text, right_text, verdict,"
            " pair_id, meta_json) VALUES(?,?,?,?,?,?,?,?,?)",
            (now(), left_spec, right_spec, full_prompt, left_text, right_text, verdict, pair_id,
             dumps({**meta, "edited": edited_better is not None, "dataset": ds_name,
                    "not_a_pair": note})))
    return VoteResult(cur.lastrowid, pair_id, ds_name, note)


def _same_answers(left: str, right: str, verdict: str, edited: str | None) -> bool:
    """The preferred answer (as edited) and the other one are the same text."""
    better, worse = (left, right) if verdict == "left" else (right, left)
    if edited is not None and edited.strip():
        better = edited
    return better.strip() == worse.strip()


def _write_pair(store, dataset, fmt, prompt, left_text, right_text, verdict, edited, meta):
    try:
        ds = get_dataset(store, dataset)
    except NotFoundError:
        ds = create_dataset(store, dataset, prompt_format=fmt.to_dict(),
                            recipe={"source": "chat"}, description="Votes from side-by-side chat")
    better, worse = (left_text, right_text) if verdict == "left" else (right_text, left_text)
    if edited is not None and edited.strip():
        better = edited.strip()
    pair = Pair(prompt, fmt.reply_turn(better), fmt.reply_turn(worse), source="chat",
                meta={**meta, "verdict": verdict, "edited": edited is not None})
    return insert_pair(store, ds.id, pair), ds.name


# ---------------------------------------------------------------------------------------
# Votes from a public Space: strangers' preferences, imported for review
# ---------------------------------------------------------------------------------------
UNREVIEWED = "unreviewed"  # the flag every imported Space vote carries until someone reviews it
SPACE_SOURCE = "space"
MAX_SPACE_VOTES = 200_000


@dataclass
class SpaceVotesImport:
    dataset: str
    pairs: int
    skipped: dict[str, int]  # why lines were left out -> how many


def import_space_votes(store: Store, path: str | Path, dataset: str,
                       prompt_format: dict | None = None) -> SpaceVotesImport:
    """A Space's `votes.jsonl` as a new dataset, every pair flagged `unreviewed` (source
    `space`): strangers voted, so nothing trains on them before the owner has looked.

    Preferences between identical answers, repeats of a pair already read and lines that are
    not preferences (ties, both bad) are left out and counted; a malformed line stops the import
    with its line number, and nothing is written (one transaction).
    """
    require_owner("import data")
    pairs, skipped, seen = [], {"identical": 0, "duplicate": 0, "not a preference": 0}, set()
    for number, record in _vote_lines(Path(path)):
        if record.get("verdict") not in ("left", "right"):
            skipped["not a preference"] += 1
            continue
        texts = tuple(record.get(k) for k in ("prompt", "chosen", "rejected"))
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise DataError(f"{path} line {number} lacks a text prompt, chosen or rejected.",
                            "Import the votes.jsonl a DPO Lab Space wrote, unchanged.")
        if texts[1].strip() == texts[2].strip():
            skipped["identical"] += 1
        elif texts in seen:
            skipped["duplicate"] += 1
        else:
            seen.add(texts)
            meta = {k: record[k] for k in ("verdict", "models", "settings", "at") if k in record}
            pairs.append(Pair(*texts, source=SPACE_SOURCE, flags=[UNREVIEWED], meta=meta))
    if not pairs:
        raise DataError(f"{path} holds no preference votes to import ({_counts(skipped)}).",
                        "Import the Space's votes.jsonl (ties go to votes-unranked.jsonl).")
    with store.write():
        ds = create_dataset(store, dataset, prompt_format=prompt_format or {},
                            recipe={"source": "space-votes", "file": str(path),
                                    "reviewed": False},
                            description="Votes from a public Space: not reviewed")
        insert_pairs(store, ds.id, pairs)
    return SpaceVotesImport(ds.name, len(pairs), {k: v for k, v in skipped.items() if v})


def _vote_lines(path: Path):
    if not path.is_file():
        raise DataError(f"No votes file at {path}.", "Give the votes.jsonl of an exported Space.")
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if number > MAX_SPACE_VOTES:
                raise DataError(f"{path} has more than {MAX_SPACE_VOTES:,} lines.",
                                "Split the file and import the parts as separate datasets.")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path} line {number} is not JSON: {exc}.",
                                "Import the votes.jsonl a DPO Lab Space wrote, unchanged.") from exc
            if not isinstance(record, dict):
                raise DataError(f"{path} line {number} is not a JSON object.",
                                "Import the votes.jsonl a DPO Lab Space wrote, unchanged.")
            yield number, record


def _counts(skipped: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in skipped.items() if v) or "the file is empty"
