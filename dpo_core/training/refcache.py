"""Reference log-prob cache: runs that share the reference inputs compute its log-probs once.

TRL 1.16 precomputes `ref_chosen_logps`/`ref_rejected_logps` columns when
`precompute_ref_log_probs` is on, but its own cache sits beside an in-memory dataset (a temporary
folder that dies with the worker) and hashes the policy, LoRA init included. Here the key is
everything the reference log-probs depend on (`key_parts`): the base model's fingerprint and weight
files, the frozen pairs file of the split, the prompt format, the truncation settings
(max_length, max_prompt_length, too_long), the weights' dtype and the precision. Any change gives
another key, so stale values are never read; the same run resumed, another epoch or a sweep's
next trial on the same pairs reads them back. Files: workspace/cache/ref_logps/<key>.jsonl.

Whenever the reference is precomputed (cache or not), the pass runs in batches of similar
lengths and TRL's hash of every weight (only used to name its temporary file) is replaced by
the key above.
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


def cache_key(parts: dict) -> str:
    """The key of one split's reference log-probs from its parts (`key_parts`)."""
    return hashlib.sha256(json.dumps({**parts, "version": 2}, sort_keys=True,
                                     default=str).encode()).hexdigest()[:32]


def key_parts(run_dir: Path, split: str, cfg, dtype: str, truncation_mode: str = "keep_start",
              ld_alpha: float | None = None) -> dict:
    """Everything one split's reference log-probs depend on, read from a frozen run folder:
    the model (fingerprint, and its weight files as they are on disk), the rendered pairs,
    the prompt format, the truncation (max_length, max_prompt_length, too_long, TRL's mode),
    the weights' dtype and the run's precision (autocast changes the numbers)."""
    model = json.loads((run_dir / MODEL_FILE).read_text())
    return {"model": model["fingerprint"], "model_files": weight_files(model["path"]),
            "pairs": file_hash(run_dir / SPLIT_FILES[split]),
            "format": json.loads((run_dir / FORMAT_FILE).read_text()),
            "max_length": cfg.max_length, "max_prompt_length": cfg.max_prompt_length,
            "too_long": cfg.too_long, "truncation": truncation_mode, "ld_alpha": ld_alpha,
            "dtype": dtype, "precision": cfg.precision}


def run_key(run_dir: Path, split: str, cfg, dtype: str, truncation_mode: str = "keep_start",
            ld_alpha: float | None = None) -> str:
    """The cache key of a frozen run folder's split."""
    return cache_key(key_parts(run_dir, split, cfg, dtype, truncation_mode, ld_alpha))


def weight_files(path: str) -> list:
    """(name, size, modification time) of a model folder's weight files: a model rewritten in
    place (same names and sizes, new values) gets a new key."""
    folder = Path(path)
    if not folder.is_dir():
        return []
    return [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir())
            if f.suffix in (".safetensors", ".bin", ".pt")]


def expected_dtype(cfg) -> str:
    """The dtype of the weights the worker loads for `cfg` (`worker.load_policy`)."""
    return "torch.bfloat16" if cfg.method == "full" and cfg.precision == "bf16" \
        else "torch.float32"


def cache_path(cache_root: Path, key: str) -> Path:
    return cache_root / CACHE_DIR / f"{key}.jsonl"


def cached(run_dir: Path, cfg, cache_root: Path, rows: int) -> bool:
    """Whether a frozen run folder's train reference log-probs are in the cache already."""
    try:
        key = run_key(run_dir, "train", cfg, expected_dtype(cfg))
    except (OSError, ValueError, KeyError):
        return False
    return read_cache(cache_path(cache_root, key), rows) is not None


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
    return precomputes(cfg) and not os.environ.get(DISABLE_ENV)


def precomputes(cfg) -> bool:
    return cfg.precompute_ref_log_probs is True and cfg.method in ("lora", "full")


def trainer_class(cfg, run_dir: Path, cache_root: Path):
    """DPOTrainer, or (reference log-probs precomputed) a subclass that names the reference by
    the lab's key instead of hashing every weight, and reads/writes the workspace cache."""
    from trl import DPOTrainer

    if not precomputes(cfg):
        return DPOTrainer
    use_cache = applies(cfg)

    class CachedRefDPOTrainer(DPOTrainer):
        """DPOTrainer whose `_precompute_ref_logps` goes through the reference cache."""

        def __init__(self, *args, **kwargs):
            # TRL sha256es every weight of the reference (about a second per 100M parameters on
            # a CPU, a minute for 7B) only to name its own temporary cache file; the lab's key
            # names the same reference (model files, pairs, format, truncation, dtype)
            import trl.trainer.dpo_trainer as dpo

            real = dpo.hash_module
            dpo.hash_module = lambda _module: run_key(run_dir, "train", cfg, expected_dtype(cfg))
            try:
                super().__init__(*args, **kwargs)
            finally:
                dpo.hash_module = real

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if not use_cache or name not in SPLIT_FILES:
                return self._by_length(dataset, name, batch_size)
            dtype = str(next(self.model.parameters()).dtype)
            path = cache_path(cache_root, run_key(run_dir, name, cfg, dtype,
                                                  self.args.truncation_mode, self.args.ld_alpha))
            cached = read_cache(path, len(dataset))
            if cached is not None:
                print(f"reference log-probs for {name}: cache hit {path.name}", flush=True)
                return dataset.add_column("ref_chosen_logps", cached[0]) \
                    .add_column("ref_rejected_logps", cached[1])
            out = self._by_length(dataset, name, batch_size)
            if self.accelerator.is_main_process:
                write_cache(path, [float(x) for x in out["ref_chosen_logps"]],
                            [float(x) for x in out["ref_rejected_logps"]])
                print(f"reference log-probs for {name}: cached as {path.name}", flush=True)
            return out

        def _by_length(self, dataset, name, batch_size):
            """TRL's reference pass in batches of similar lengths (in the dataset's order each
            batch pads to its longest pair), the values put back in the dataset's order: the
            training batches are the same as without the precompute."""
            columns = ("prompt_ids", "chosen_ids", "rejected_ids")
            if not all(c in dataset.column_names for c in columns):
                return super()._precompute_ref_logps(dataset, name, batch_size)
            lengths = [len(p) + max(len(c), len(r)) for p, c, r in
                       zip(*(dataset[c] for c in columns), strict=True)]
            order = sorted(range(len(lengths)), key=lengths.__getitem__)
            done = super()._precompute_ref_logps(dataset.select(order), name, batch_size)
            chosen, rejected = [0.0] * len(order), [0.0] * len(order)
            for i, c, r in zip(order, done["ref_chosen_logps"], done["ref_rejected_logps"],
                               strict=True):
                chosen[i], rejected[i] = c, r
            return dataset.add_column("ref_chosen_logps", chosen) \
                .add_column("ref_rejected_logps", rejected)

    return CachedRefDPOTrainer
