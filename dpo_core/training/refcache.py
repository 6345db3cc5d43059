"""Reference log-prob cache: runs that share the reference inputs compute its log-probs once.

TRL 1.16 precomputes `ref_chosen_logps`/`ref_rejected_logps` columns when
`precompute_ref_log_probs` is on, but its own cache sits beside an in-memory dataset (a temporary
folder that dies with the worker) and hashes the policy, LoRA init included. Here the key is
everything the reference log-probs depend on: the base model's fingerprint, the frozen pairs file
of the split, the prompt format, the length/truncation settings and the weights' dtype. Any change
gives another key, so stale values are never read. Files: workspace/cache/ref_logps/<key>.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..models import FORMAT_FILE
from .freeze import MODEL_FILE, SPLIT_FILES

CACHE_DIR = "ref_logps"
DISABLE_ENV = "DPO_LAB_NO_REF_CACHE"  # set to 1 to measure or debug without the cache


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(model_fingerprint: str, pairs_hash: str, prompt_format: dict, max_length: int,
              truncation_mode: str, dtype: str, ld_alpha: float | None = None) -> str:
    """The key of one split's reference log-probs; every input that changes them is in it."""
    parts = {"model": model_fingerprint, "pairs": pairs_hash, "format": prompt_format,
             "max_length": max_length, "truncation": truncation_mode, "dtype": dtype,
             "ld_alpha": ld_alpha, "version": 1}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def run_key(run_dir: Path, split: str, args, dtype: str) -> str:
    """The cache key of a frozen run folder's split under these TRL args."""
    model = json.loads((run_dir / MODEL_FILE).read_text())
    fmt = json.loads((run_dir / FORMAT_FILE).read_text())
    return cache_key(model["fingerprint"], file_hash(run_dir / SPLIT_FILES[split]), fmt,
                     args.max_length, args.truncation_mode, dtype, args.ld_alpha)


def read_cache(path: Path, rows: int) -> tuple[list[float], list[float]] | None:
    """(chosen, rejected) log-probs from a cache file, None when missing or not `rows` long."""
    if not path.is_file():
        return None
    chosen, rejected = [], []
    try:
        for line in path.read_text().splitlines():
            item = json.loads(line)
            chosen.append(float(item["c"]))
            rejected.append(float(item["r"]))
    except (ValueError, KeyError, TypeError):
        return None  # a damaged file is recomputed and rewritten
    return (chosen, rejected) if len(chosen) == rows else None


def write_cache(path: Path, chosen: list[float], rejected: list[float]) -> None:
    """Write atomically (a concurrent reader sees the old file or the whole new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps({"c": c, "r": r}) + "\n"
                           for c, r in zip(chosen, rejected, strict=True)))
    tmp.replace(path)


def applies(cfg) -> bool:
    """The cache is used for precomputed references of LoRA and full runs (not QLoRA)."""
    return bool(cfg.precompute_ref_log_probs) and cfg.method in ("lora", "full") \
        and not os.environ.get(DISABLE_ENV)


def trainer_class(cfg, run_dir: Path, cache_root: Path):
    """DPOTrainer, or a subclass whose reference precompute reads/writes the workspace cache."""
    from trl import DPOTrainer

    if not applies(cfg):
        return DPOTrainer

    class CachedRefDPOTrainer(DPOTrainer):
        """DPOTrainer whose `_precompute_ref_logps` goes through the reference cache."""

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if name not in SPLIT_FILES:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            dtype = str(next(self.model.parameters()).dtype)
            path = cache_root / CACHE_DIR / f"{run_key(run_dir, name, self.args, dtype)}.jsonl"
            cached = read_cache(path, len(dataset))
            if cached is not None:
                print(f"reference log-probs for {name}: cache hit {path.name}", flush=True)
                return dataset.add_column("ref_chosen_logps", cached[0]) \
                    .add_column("ref_rejected_logps", cached[1])
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            if self.accelerator.is_main_process:
                write_cache(path, [float(x) for x in out["ref_chosen_logps"]],
                            [float(x) for x in out["ref_rejected_logps"]])
                print(f"reference log-probs for {name}: cached as {path.name}", flush=True)
            return out

    return CachedRefDPOTrainer
