"""Visitor votes as JSON Lines, in the shape the lab imports as pairs.

Left/right votes go to `votes.jsonl` (one {prompt, chosen, rejected, verdict, models, settings,
at} object per line: `python -m dpo_core data import votes.jsonl --dataset NAME` reads it as is);
ties and both-bad votes are not pairs and go to `votes-unranked.jsonl`. On a Space the files
live in the persistent `/data` folder when it exists and is writable, else next to the app
($DPO_DEMO_VOTES_DIR overrides both).
Copied into exported Space folders: standard library only.
"""

from __future__ import annotations

import json
import os
import threading
import time
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
