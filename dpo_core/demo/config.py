"""The demo's one config file (`space_config.json` next to the app): models, format, limits, text.

This module is copied into exported Space folders, so it imports nothing from `dpo_core`: only
the standard library.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

CONFIG_FILE = "space_config.json"
BASE_ENV = "DPO_DEMO_BASE"  # overrides where the base model is loaded from


class DemoConfigError(ValueError):
    """The config file is unusable; the message names the field and the fix (owner-facing)."""


@dataclass
class Limits:
    """Server-side limits: what a visitor can ask for is clamped to these, whatever the browser sends."""

    max_prompt_chars: int = 1000
    max_history_turns: int = 3
    max_new_tokens: int = 128
    concurrency_limit: int = 1
    max_queue_size: int = 16
    max_temperature: float = 1.5
    time_limit_s: int = 120  # longest one streamed answer pair may run
    max_body_bytes: int = 0  # a body beyond this gets 413 before it is read (0: fit the prompt)
    votes_per_minute: int = 10  # per visitor (address) and per session
    max_votes: int = 20000  # lines in each vote file; then votes are refused until collected

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value < (0 if f.name in (
                    "max_history_turns", "max_body_bytes") else 1e-9):
                raise DemoConfigError(f"limits.{f.name} is {value!r}; use a positive number.")
        needed = 6 * self.max_prompt_chars + 4096  # a prompt of \uXXXX escapes and the envelope
        if not self.max_body_bytes:
            self.max_body_bytes = max(65536, needed)
        if self.max_body_bytes < needed:
            raise DemoConfigError(f"limits.max_body_bytes is {self.max_body_bytes}, too small "
                                  f"for prompts of {self.max_prompt_chars} characters; use at "
                                  f"least {needed}.")


@dataclass
class Sampling:
    """Default sampling settings shown on the sliders (clamped by `Limits` when used)."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 50
    max_new_tokens: int = 64
    repetition_penalty: float = 1.1


@dataclass
class DemoConfig:
    """Everything the demo needs; models are fixed here at start, never chosen by visitors."""

    base: str  # a model folder (relative to the config file) or a hub id
    adapter: str = ""  # a LoRA adapter folder or hub id; empty when `tuned` is a full model
    tuned: str = ""  # a full fine-tuned model folder or hub id (kind 'full')
    kind: str = "lora"
    prompt_format: dict = field(default_factory=lambda: {"kind": "chat"})
    title: str = "DPO Lab demo"
    description: str = ""
    run: dict = field(default_factory=dict)  # run id, base, dataset, method, results (with n)
    baseline_note: str = ""  # shown on the page when the baseline is not the evaluated base
    examples: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    sampling: Sampling = field(default_factory=Sampling)
    license: str = "apache-2.0"
    torch_threads: int = 0  # CPU threads per generation (0: torch's default); 1 suits tiny models
    root: str = ""  # folder of the config file (set when loaded; relative paths resolve here)

    def __post_init__(self):
        if isinstance(self.limits, dict):
            self.limits = Limits(**_known(Limits, self.limits, "limits"))
        if isinstance(self.sampling, dict):
            self.sampling = Sampling(**_known(Sampling, self.sampling, "sampling"))
        if self.kind not in ("lora", "full"):
            raise DemoConfigError(f"kind is {self.kind!r}; use 'lora' or 'full'.")
        if not self.base:
            raise DemoConfigError("base is empty; set a model folder or hub id.")
        if self.kind == "lora" and not self.adapter:
            raise DemoConfigError("kind is 'lora' but adapter is empty; set the adapter folder.")
        if self.kind == "full" and not self.tuned:
            raise DemoConfigError("kind is 'full' but tuned is empty; set the model folder.")
        self.examples = [str(e) for e in self.examples][:20]

    def locate(self, value: str) -> str:
        """A model reference as loadable: a folder under the config's root, else a hub id as is."""
        if not value:
            return value
        path = Path(self.root or ".") / value
        return str(path.resolve()) if path.exists() else value

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("root")
        return data


def _known(cls, data: dict, label: str) -> dict:
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise DemoConfigError(f"{label} has unknown key(s) {sorted(unknown)}.")
    return data


def load_config(path: str | Path) -> DemoConfig:
    """Read and check the config file; relative model paths resolve against its folder."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DemoConfigError(f"Cannot read the demo config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DemoConfigError(f"{path} must hold a JSON object.")
    config = DemoConfig(**_known(DemoConfig, {k: v for k, v in data.items() if k != "root"},
                                 str(path)))
    config.root = str(path.resolve().parent)
    override = os.environ.get(BASE_ENV, "").strip()
    if override:  # e.g. a local copy of a hub base, to run the Space offline
        config.base = override
    return config


def write_config(config: DemoConfig, folder: str | Path) -> Path:
    """Write `space_config.json` into `folder`."""
    target = Path(folder) / CONFIG_FILE
    target.write_text(json.dumps(config.to_dict(), indent=2, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    return target


def clamp(value, low, high, kind=float):
    """`value` as `kind`, pulled into [low, high]; junk becomes `low` (visitors send anything)."""
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return kind(low)
    if number != number:  # NaN
        return kind(low)
    return kind(min(max(number, low), high))
