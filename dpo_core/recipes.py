"""The shipped recipes: YAML files in `recipes/`, one folder per kind.

- `recipes/train/`: run configs (`python -m dpo_core train`, the Train page);
- `recipes/generate/`: pair builds (`python -m dpo_core generate`, the Generate page);
- `recipes/sweeps/`: sweeps (`python -m dpo_core sweep`, the Sweeps page).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
Kind = Literal["train", "generate", "sweeps"]


def recipe_paths(kind: Kind) -> list[Path]:
    """The recipes of one kind, sorted by name."""
    return sorted((RECIPES_DIR / kind).glob("*.yaml"))


def recipe_names(kind: Kind) -> list[str]:
    return [p.stem for p in recipe_paths(kind)]


def recipe_path(kind: Kind, name: str) -> Path:
    return RECIPES_DIR / kind / f"{name}.yaml"
