"""A run folder frozen at launch: everything the worker needs, so a run can be reproduced and
resumed whatever happens to the dataset or the model spec later.

runs/<id>/: config.yaml (the planned, concrete settings), plan.json (each execution choice with
its reason), pairs.train.jsonl and pairs.eval.jsonl (the exact rendered pairs, in TRL's standard
text shape; train pairs carry their length in tokens), prompt_format.json, model.json (spec,
folder, fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..data.datasets import count_pairs, get_dataset, iter_pairs
from ..data.rendering import format_for, render_pair
from ..errors import ConfigError
from ..formats import PromptFormat
from ..models import FORMAT_FILE, READY_FILE, load_tokenizer, resolve_path
from ..store import Store
from ..workspace import Workspace
from .config import AUTO, RunConfig
from .planner import Lengths, Plan

MODEL_FILE = "model.json"
PLAN_FILE = "plan.json"
SPLIT_FILES = {"train": "pairs.train.jsonl", "eval": "pairs.eval.jsonl"}


@dataclass
class Rendered:
    """A run's pairs rendered for its model, before the plan: the records a run folder holds
    and the train pairs' token lengths the planner reads."""

    dataset_id: int
    model_path: str
    fmt: PromptFormat
    train: list[dict]
    evals: list[dict]
    lengths: Lengths


def render_run(store: Store, cfg: RunConfig, ws: Workspace) -> Rendered:
    """The train (and eval) pairs of `cfg` rendered for its model, train lengths measured."""
    ds = get_dataset(store, cfg.dataset)
    model_path = resolve_path(cfg.model, ws)
    tok = load_tokenizer(model_path)
    fmt = prompt_format_for(cfg, ds.prompt_format, model_path, tok)
    lengths = Lengths([], [], [])
    train = render_pairs(store, ds.id, cfg.train_split, cfg.max_train_pairs, fmt, tok, cfg,
                         lengths)
    evals = []
    if cfg.eval_split and count_pairs(store, ds.id, cfg.eval_split):
        evals = render_pairs(store, ds.id, cfg.eval_split, cfg.max_eval_pairs, fmt, tok, cfg)
    return Rendered(ds.id, model_path, fmt, train, evals, lengths)


def freeze_run(store: Store, cfg: RunConfig, run_dir: Path, ws: Workspace, run_id: str,
               rendered: Rendered | None = None, plan: Plan | None = None) -> dict:
    """Write config, rendered pairs, prompt format, model info (and the plan); `cfg` is the
    planned, concrete config. With too_long: drop, train pairs longer than max_length are
    left out (counted in the result); with truncate TRL cuts them. Returns what the row needs."""
    rendered = rendered or render_run(store, cfg, ws)
    train, dropped = kept_pairs(rendered, cfg)
    _write_jsonl(run_dir / SPLIT_FILES["train"], train)
    _write_jsonl(run_dir / SPLIT_FILES["eval"], rendered.evals)
    (run_dir / FORMAT_FILE).write_text(json.dumps(rendered.fmt.to_dict(), indent=2))
    (run_dir / MODEL_FILE).write_text(json.dumps(
        {"spec": cfg.model, "path": rendered.model_path,
         "fingerprint": model_fingerprint(rendered.model_path)}, indent=2))
    write_config(run_dir, cfg, run_id, plan)
    return {"dataset_id": rendered.dataset_id, "total_steps": total_steps(cfg, len(train)),
            "train": len(train), "eval": len(rendered.evals), "dropped": dropped}


def write_config(run_dir: Path, cfg: RunConfig, run_id: str, plan: Plan | None = None) -> None:
    """config.yaml (and plan.json): what the worker runs, with every setting concrete."""
    RunConfig.from_dict({**cfg.to_dict(), "name": cfg.name or run_id}).save(
        run_dir / "config.yaml")
    if plan is not None:
        (run_dir / PLAN_FILE).write_text(json.dumps(plan.to_dict(), indent=2, default=str))


def kept_pairs(rendered: Rendered, cfg: RunConfig) -> tuple[list[dict], int]:
    """(train records the run trains on, how many too_long: drop left out). A record keeps its
    length in tokens (the worker's length-grouped batches read it)."""
    limit = cfg.max_length if cfg.max_length != AUTO else None
    rows, dropped = [], 0
    for row, n in zip(rendered.train, rendered.lengths.pairs(), strict=True):
        if limit is not None and n > limit and cfg.too_long == "drop":
            dropped += 1
            continue
        rows.append({**row, "length": min(n, limit or n)})
    if not rows:
        raise ConfigError(f"max_length is {cfg.max_length} and every one of the "
                          f"{len(rendered.train)} train pairs is longer, so too_long: drop "
                          "leaves none to train on.",
                          f"Raise max_length to {max(rendered.lengths.pairs())} (or auto), or "
                          "set too_long: truncate.", field="max_length")
    return rows, dropped


def total_steps(cfg: RunConfig, train_pairs: int) -> int:
    """Optimizer steps of a run: max_steps, or the epochs over the train pairs."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    per_step = cfg.per_device_train_batch_size * cfg.num_processes
    return int(math.ceil(math.ceil(train_pairs / per_step) / cfg.gradient_accumulation_steps
                         * cfg.num_train_epochs))


def prompt_format_for(cfg: RunConfig, dataset_format: dict, model_path: str,
                      tok) -> PromptFormat:
    """The run's format: the config's own, else the dataset's, else the model's."""
    override = cfg.prompt_format if isinstance(cfg.prompt_format, dict) else None
    return format_for(override, dataset_format, model_path, tok)


def render_pairs(store: Store, dataset_id: int, split: str, limit: int, fmt: PromptFormat, tok,
                 cfg: RunConfig, lengths: Lengths | None = None) -> list[dict]:
    """Pairs of one split as TRL's standard text shape (data/rendering.py: conversations through
    the chat template, system turns applied), prompts cut to max_prompt_length. With `lengths`
    each pair's token lengths are added to it, replies with the EOS token TRL appends."""
    rows, too_long = [], 0
    max_length = cfg.max_length if cfg.max_length != AUTO else 0
    for pair in iter_pairs(store, dataset_id, split):
        if limit and len(rows) >= limit:
            break
        rendered = render_pair(pair, fmt, tok, 0, cfg.max_prompt_length,
                               measure=lengths is not None)
        if max_length and not rendered.prompt_cut and rendered.prompt_tokens >= max_length:
            too_long = max(too_long, rendered.prompt_tokens)
        if lengths is not None:
            lengths.prompt.append(rendered.prompt_tokens)
            lengths.chosen.append(_with_eos(rendered.chosen_tokens, rendered.chosen, tok))
            lengths.rejected.append(_with_eos(rendered.rejected_tokens, rendered.rejected, tok))
        rows.append(rendered.record())
    if too_long:
        raise ConfigError(f"max_length is {cfg.max_length} but a {split} prompt has {too_long} "
                          "tokens, leaving no room for its reply.",
                          f"Raise max_length above {too_long + 32}, or set max_prompt_length "
                          f"(e.g. {max_length // 2}) to cut long prompts.", field="max_length")
    return rows


def _with_eos(tokens: int, text: str, tok) -> int:
    """A reply's tokens as TRL trains it: it appends EOS to a standard-text reply without one."""
    eos = getattr(tok, "eos_token", None)
    return tokens + (1 if eos and not text.endswith(eos) else 0)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def model_fingerprint(path: str) -> str:
    """A cheap identity of a model folder: its prepared fingerprint, else names+sizes of weights."""
    folder = Path(path)
    ready = folder / READY_FILE
    if ready.is_file():
        info = json.loads(ready.read_text())
        if info.get("fingerprint"):
            return info["fingerprint"]
    if not folder.is_dir():
        return f"hub:{path}"
    parts = [(p.name, p.stat().st_size) for p in sorted(folder.glob("*.safetensors"))]
    config = (folder / "config.json").read_text() if (folder / "config.json").is_file() else ""
    return hashlib.sha256(json.dumps([parts, config]).encode()).hexdigest()
