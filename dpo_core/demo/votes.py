"""Visitor votes as JSON Lines, in the shape the lab imports as pairs, and what keeps them
honest.

Left/right votes go to `votes.jsonl` (one {prompt, chosen, rejected, verdict, models, settings,
at} object per line; `python -m dpo_core import-space-votes votes.jsonl --dataset NAME` brings
them into the lab as a dataset flagged `unreviewed`); ties and both-bad votes are not pairs and
go to `votes-unranked.jsonl`. On a Space the files live in the persistent `/data` folder when it
exists and is writable, else next to the app ($DPO_DEMO_VOTES_DIR overrides both).

`VoteBox` refuses what would make bad training data or fill the disk: a preference between two
identical answers (it teaches nothing), the same answers voted again, more than
`votes_per_minute` votes from one visitor or one session, and any vote once a file holds
`max_votes` lines.
Copied into exported Space folders: standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

VERDICTS = ("left", "right", "tie", "both_bad")
PAIRS_FILE = "votes.jsonl"
UNRANKED_FILE = "votes-unranked.jsonl"
PERSISTENT = Path("/data")

_write_lock = threading.Lock()


def votes_dir(app_dir: str | Path, persistent: Path = PERSISTENT) -> Path:
    """Where votes go: $DPO_DEMO_VOTES_DIR, else Spaces' persistent storage, else the app's folder."""
    chosen = os.environ.get("DPO_DEMO_VOTES_DIR")
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return Path(chosen)
    if persistent.is_dir() and os.access(persistent, os.W_OK):
        return persistent
    return Path(app_dir)


def vote_record(verdict: str, prompt: str, left: str, right: str, models: dict,
                settings: dict) -> dict:
    """One line: left/right carry chosen/rejected; tie/both_bad keep both answers, no pair."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    record = {"prompt": prompt, "verdict": verdict, "models": models, "settings": settings,
              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if verdict in ("left", "right"):
        chosen, rejected = (left, right) if verdict == "left" else (right, left)
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **record}
    return {**record, "left": left, "right": right}


def append_vote(folder: str | Path, record: dict) -> Path:
    """Append one vote line (a lock keeps concurrent visitors' lines whole)."""
    name = PAIRS_FILE if record["verdict"] in ("left", "right") else UNRANKED_FILE
    target = Path(folder) / name
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with _write_lock, open(target, "a", encoding="utf-8") as f:
        f.write(line)
    return target


IDENTICAL = ("The two answers are the same, so neither is better and nothing was saved. "
             "Ask again for two different answers.")
DUPLICATE = "These answers already have a vote; nothing more was saved."
TOO_FAST = "Too many votes in the last minute; please wait a little before voting again."
FULL = "The vote box is full for now, so this vote was not saved. Thank you for trying!"
WINDOW_S = 60.0
MAX_TRACKED = 10_000  # visitors and sessions remembered by the rate limit


class VoteBox:
    """Stores votes in `folder` unless one of the refusals applies (thread-safe)."""

    def __init__(self, folder: str | Path, votes_per_minute: int, max_votes: int,
                 clock: Callable[[], float] = time.monotonic):
        self.folder, self.per_minute, self.max_votes = Path(folder), votes_per_minute, max_votes
        self.clock = clock
        self.lock = threading.Lock()
        self.recent: dict[str, deque] = {}
        self.lines = {name: 0 for name in (PAIRS_FILE, UNRANKED_FILE)}
        self.seen: set[str] = set()
        for name in self.lines:  # what earlier runs of the Space stored
            path = self.folder / name
            if path.is_file():
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        self.lines[name] += 1
                        self.seen.add(_answers_key(json.loads(line)) if line.strip() else "")

    def cast(self, record: dict, visitor: str, session: str) -> str | None:
        """Store one vote; None when saved, else why it was refused (shown to the visitor)."""
        if record["verdict"] in ("left", "right") and record["chosen"] == record["rejected"]:
            return IDENTICAL
        key = _answers_key(record)
        name = PAIRS_FILE if record["verdict"] in ("left", "right") else UNRANKED_FILE
        with self.lock:
            if key in self.seen:
                return DUPLICATE
            if self.lines[name] >= self.max_votes:
                return FULL
            now = self.clock()
            keys = [f"visitor:{visitor}", f"session:{session}"]
            if any(len(self._window(k, now)) >= self.per_minute for k in keys):
                return TOO_FAST
            append_vote(self.folder, record)
            self.lines[name] += 1
            self.seen.add(key)
            for k in keys:
                self.recent[k].append(now)
        return None

    def _window(self, key: str, now: float) -> deque:
        stamps = self.recent.get(key)
        if stamps is None:
            if len(self.recent) >= MAX_TRACKED:  # forget whoever voted longest ago
                oldest = min(self.recent, key=lambda k: self.recent[k][-1]
                             if self.recent[k] else float("-inf"))
                del self.recent[oldest]
            stamps = self.recent[key] = deque()
        while stamps and now - stamps[0] >= WINDOW_S:
            stamps.popleft()
        return stamps


def _answers_key(record: dict) -> str:
    """The same prompt and answers, whichever way they were voted."""
    answers = sorted(str(record.get(k, "")) for k in (("chosen", "rejected") if "chosen" in record
                                                      else ("left", "right")))
    text = json.dumps([record.get("prompt", ""), *answers], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
