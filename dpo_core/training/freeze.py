"""A run folder frozen at launch: everything the worker needs, so a run can be reproduced and
resumed whatever happens to the dataset or the model spec later.

runs/<id>/: config.yaml, pairs.train.jsonl and pairs.eval.jsonl (the exact rendered pairs, in
TRL's standard text shape), prompt_format.json, model.json (spec, folder, fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from ..data.datasets import count_pairs, get_dataset, iter_pairs
from ..errors import ConfigError
from ..formats import PromptFormat
from ..models import FORMAT_FILE, READY_FILE, load_tokenizer, read_prompt_format, resolve_path
from ..store import Store
from ..workspace import Workspace
from .config import RunConfig

MODEL_FILE = "model.json"
SPLIT_FILES = {"train": "pairs.train.jsonl", "eval": "pairs.eval.jsonl"}


def freeze_run(store: Store, cfg: RunConfig, run_dir: Path, ws: Workspace, run_id: str) -> dict:
    """Write config, rendered pairs, prompt format and model info; returns what the row needs."""
    ds = get_dataset(store, cfg.dataset)
    model_path = resolve_path(cfg.model, ws)
    tok = load_tokenizer(model_path)
    fmt = prompt_format_for(cfg, ds.prompt_format, model_path, tok)
    train = render_pairs(store, ds.id, cfg.train_split, cfg.max_train_pairs, fmt, tok, cfg)
    evals = []
    if cfg.eval_split and count_pairs(store, ds.id, cfg.eval_split):
        evals = render_pairs(store, ds.id, cfg.eval_split, cfg.max_eval_pairs, fmt, tok, cfg)
    _write_jsonl(run_dir / SPLIT_FILES["train"], train)
    _write_jsonl(run_dir / SPLIT_FILES["eval"], evals)
    (run_dir / FORMAT_FILE).write_text(json.dumps(fmt.to_dict(), indent=2))
    (run_dir / MODEL_FILE).write_text(json.dumps(
        {"spec": cfg.model, "path": model_path, "fingerprint": model_fingerprint(model_path)},
        indent=2))
    RunConfig.from_dict({**cfg.to_dict(), "name": cfg.name or run_id}).save(
        run_dir / "config.yaml")
    return {"dataset_id": ds.id, "total_steps": total_steps(cfg, len(train)),
            "train": len(train), "eval": len(evals)}


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
    if isinstance(cfg.prompt_format, dict):
        return PromptFormat.from_dict(cfg.prompt_format)
    if dataset_format:
        return PromptFormat.from_dict(dataset_format)
    return read_prompt_format(model_path, tok)


def render_pairs(store: Store, dataset_id: int, split: str, limit: int, fmt: PromptFormat, tok,
                 cfg: RunConfig) -> list[dict]:
    """Pairs of one split as TRL's standard text shape, prompts cut to max_prompt_length."""
    rows, too_long = [], 0
    for pair in iter_pairs(store, dataset_id, split):
        if limit and len(rows) >= limit:
            break
        prompt = fmt.render_prompt(pair.prompt, tok)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if cfg.max_prompt_length and len(ids) > cfg.max_prompt_length:
            # keep the end of the prompt: the turn being answered matters most
            prompt = tok.decode(ids[-cfg.max_prompt_length:])
        elif len(ids) >= cfg.max_length:
            too_long = max(too_long, len(ids))
        rows.append({"pair_id": pair.id, "prompt": prompt,
                     "chosen": fmt.render_reply(pair.chosen, tok),
                     "rejected": fmt.render_reply(pair.rejected, tok)})
    if too_long:
        raise ConfigError(f"max_length is {cfg.max_length} but a {split} prompt has {too_long} "
                          "tokens, leaving no room for its reply.",
                          f"Raise max_length above {too_long + 32}, or set max_prompt_length "
                          f"(e.g. {cfg.max_length // 2}) to cut long prompts.", field="max_length")
    return rows


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
