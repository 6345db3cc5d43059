"""The workspace: one folder ($DPO_LAB_HOME, default ~/.dpo_lab) holding all of a user's state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "~/.dpo_lab"
SUBDIRS = ("runs", "models", "cache", "exports")


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace; `ensure()` creates the folders."""

    home: Path

    @property
    def db_path(self) -> Path:
        return self.home / "lab.db"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def exports(self) -> Path:
        return self.home / "exports"

    def ensure(self) -> Workspace:
        for name in SUBDIRS:
            (self.home / name).mkdir(parents=True, exist_ok=True)
        return self


def workspace_home() -> Path:
    """The workspace folder from $DPO_LAB_HOME, or the documented default."""
    return Path(os.environ.get("DPO_LAB_HOME") or DEFAULT_HOME).expanduser().resolve()


def get_workspace(home: str | Path | None = None) -> Workspace:
    """The workspace at `home` (or $DPO_LAB_HOME), with its folders created."""
    return Workspace(Path(home).expanduser().resolve() if home else workspace_home()).ensure()
