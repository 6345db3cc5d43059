"""Votes: a chat preference becomes a pair in a dataset (the prompt with the chat's history, in
the run's format), and every vote is kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..data.datasets import Pair, create_dataset, get_dataset, insert_pair
from ..errors import ConfigError, NotFoundError
from ..formats import PromptFormat
from ..store import Store, dumps, now
from .sampling import SamplingSettings

Verdict = Literal["left", "right", "tie", "both_bad"]
VERDICTS = ("left", "right", "tie", "both_bad")
History = tuple[tuple[str, str], ...] | list[tuple[str, str]]

@dataclass
class VoteResult:
    vote_id: int
    pair_id: int | None
    dataset: str | None


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
    pair_id = ds_name = None
    with store.write() as conn:
        if verdict in ("left", "right"):
            if not dataset or not dataset.strip():
                raise ConfigError("A vote with a preference needs a dataset to write the pair to.",
                                  "Pick a dataset, or type a new name.")
            pair_id, ds_name = _write_pair(store, dataset.strip(), fmt, full_prompt, left_text,
                                           right_text, verdict, edited_better, meta)
        cur = conn.execute(
            "INSERT INTO votes(at, left_spec, right_spec, prompt, left_text, right_text, verdict,"
            " pair_id, meta_json) VALUES(?,?,?,?,?,?,?,?,?)",
            (now(), left_spec, right_spec, full_prompt, left_text, right_text, verdict, pair_id,
             dumps({**meta, "edited": edited_better is not None, "dataset": ds_name})))
    return VoteResult(cur.lastrowid, pair_id, ds_name)


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
