"""Checkpoint folders: a completion marker written last, finding the newest complete one, and
the file naming the checkpoint a resumed run continues from."""

from __future__ import annotations

import json
from pathlib import Path

from ..store import now

COMPLETE_MARKER = "COMPLETE.json"  # written last into a checkpoint folder: only marked ones resume
RESUME_FILE = "resume.json"  # in a run folder: the checkpoint a resumed worker continues from


def mark_complete(folder: Path, step: int) -> None:
    """Write the completion marker last (temp file + rename), so a torn checkpoint is never used."""
    tmp = folder / (COMPLETE_MARKER + ".tmp")
    tmp.write_text(json.dumps({"step": step, "at": now()}))
    tmp.replace(folder / COMPLETE_MARKER)


def last_complete_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint folder whose completion marker exists."""
    folder = Path(run_dir) / "checkpoints"
    done = [p for p in folder.glob("checkpoint-*")
            if (p / COMPLETE_MARKER).is_file() and p.name.split("-")[-1].isdigit()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)
