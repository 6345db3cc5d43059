"""A resource estimate before launch: parameters trained, memory per part, rough time per step.

Read from the model's config.json (no weights loaded). The numbers are deliberately simple
(AdamW, two sequences per pair, activations ~ 18 x hidden per token per layer) and meant to
answer "will this fit, and roughly how slow", not to replace a profiler.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.datasets import dataset_version, get_dataset
from ..device import detect_device
from ..errors import DPOLabError
from ..models import DEFAULT_SPEC, builtin_dir, is_ready, load_tokenizer, resolve_path
from ..store import open_store
from ..workspace import get_workspace
from .config import ALL_PROJECTIONS, RunConfig, resolve_precision
from .freeze import prompt_format_for, render_pairs

GB = 2**30
# SmolLM2-135M-Instruct, so the default model can be estimated before it is prepared
SMOLLM2_CONFIG = {"hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536,
                  "vocab_size": 49152, "num_attention_heads": 9, "num_key_value_heads": 3,
                  "tie_word_embeddings": True}
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass
class Estimate:
    total_params: int
    trained_params: int
    memory_gb: dict[str, float]  # weights, gradients, optimizer, activations, reference
    total_gb: float
    device_gb: float
    seconds_per_step: float
    fits: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.memory_gb.items())
        lines = [f"parameters: {self.total_params / 1e6:.1f}M, trained "
                 f"{self.trained_params / 1e6:.2f}M "
                 f"({100 * self.trained_params / max(1, self.total_params):.2f}%)",
                 f"memory (GB): {parts}; total {self.total_gb:.2f} of {self.device_gb:.0f}",
                 f"time per optimizer step: ~{self.seconds_per_step:.1f} s"]
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])


def model_shape(spec: str, workspace=None) -> dict:
    """The model's config.json as a dict, without loading weights."""
    if spec in (DEFAULT_SPEC, "builtin:smollm2"):
        return dict(SMOLLM2_CONFIG)
    path = resolve_path(spec, workspace)
    cfg_file = Path(path) / "config.json"
    if cfg_file.is_file():
        data = json.loads(cfg_file.read_text())
    else:  # a hub id: transformers fetches only the config
        from transformers import AutoConfig

        data = AutoConfig.from_pretrained(path).to_dict()
    return data.get("text_config", data)


def count_params(shape: dict) -> tuple[int, dict[str, tuple[int, int]]]:
    """Total parameters and the (in, out) size of each projection type in one layer."""
    h, n_layers = shape["hidden_size"], shape["num_hidden_layers"]
    inter, vocab = shape.get("intermediate_size", 4 * h), shape["vocab_size"]
    heads = shape.get("num_attention_heads", 1)
    kv = shape.get("num_key_value_heads", heads)
    head_dim = shape.get("head_dim") or h // heads
    proj = {"q_proj": (h, heads * head_dim), "k_proj": (h, kv * head_dim),
            "v_proj": (h, kv * head_dim), "o_proj": (heads * head_dim, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    per_layer = sum(i * o for i, o in proj.values()) + 2 * h
    total = vocab * h * (1 if shape.get("tie_word_embeddings", True) else 2) + \
        n_layers * per_layer + h
    return total, proj


def estimate(cfg: RunConfig, workspace=None, device=None, store=None) -> Estimate:
    """Memory and time for one run of `cfg` on `device` (detected when not given).

    Time counts the tokens a step really runs: each batch is padded to its longest pair, measured
    on up to SAMPLE_PAIRS rendered pairs of the train split when the dataset and the model's
    tokenizer are at hand (max_length otherwise, the worst case).
    """
    if device is None:
        device = detect_device()
    shape = model_shape(cfg.model, workspace)
    total, proj = count_params(shape)
    n_layers, h = shape["num_hidden_layers"], shape["hidden_size"]
    precision = resolve_precision(cfg, device)
    if cfg.method == "full":
        trained = total
    else:
        targets = cfg.lora.target_modules
        names = ALL_PROJECTIONS if targets in ("all-linear", ["all-linear"]) else (
            targets if isinstance(targets, list) else targets.split(","))
        trained = n_layers * sum(cfg.lora.r * (i + o) for n, (i, o) in proj.items()
                                 if n in names)
    weight_bytes = 0.55 if cfg.method == "qlora" else BYTES[precision]
    act_bytes = BYTES[precision]
    seqs = 2 * cfg.per_device_train_batch_size  # chosen and rejected
    per_token_layer = (2 if cfg.gradient_checkpointing else 18) * h * act_bytes
    mem = {
        "weights": total * weight_bytes / GB,
        "gradients": trained * 4 / GB,
        "optimizer": trained * 8 / GB,  # AdamW: two fp32 moments
        "activations": seqs * cfg.max_length * n_layers * per_token_layer / GB,
        # LoRA's reference is the base with adapters off; precomputed log-probs need none
        "reference": 0.0 if cfg.method != "full" or cfg.precompute_ref_log_probs
        else total * BYTES[precision] / GB,
    }
    total_gb = sum(mem.values()) * 1.15  # allocator slack, buffers, CUDA context
    device_gb = device.memory_gb if device.kind == "cuda" else device.memory_gb * 0.8
    length = _padded_length(cfg, workspace, store) or cfg.max_length
    tokens = seqs * length * cfg.gradient_accumulation_steps
    flops = tokens * total * (6 if cfg.method == "full" else 4) + tokens * total * 2  # + ref
    seconds = flops / _flops_per_second(device, precision)
    est = Estimate(total, int(trained), {k: round(v, 3) for k, v in mem.items()},
                   round(total_gb, 3), round(device_gb, 1), round(seconds, 2),
                   fits=device_gb <= 0 or total_gb <= device_gb)
    if not est.fits:
        est.warnings.append(f"needs ~{total_gb:.1f} GB but the {device.kind} has "
                            f"{device_gb:.1f} GB. " + _fix(cfg))
    return est


def _padded_length(cfg: RunConfig, workspace, store) -> float | None:
    """Mean padded length of a training batch on this dataset, or None when it cannot be read."""
    try:
        ws = workspace or get_workspace()
        store = store or open_store(ws.db_path)
        ds = get_dataset(store, cfg.dataset)
        version = dataset_version(store, ds.id, cfg.train_split)
        if cfg.model in (DEFAULT_SPEC, "builtin:smollm2"):  # never prepare it just to count
            folder = builtin_dir(DEFAULT_SPEC.removeprefix("builtin:"), ws)
            model_path = str(folder) if is_ready(folder) else ""
        else:
            model_path = resolve_path(cfg.model, ws)
    except (DPOLabError, OSError):
        return None
    if not model_path or not Path(model_path).is_dir() or not version["n"]:
        return None
    key = (str(store.path), ds.id, cfg.train_split, version["n"], version["at"], model_path,
           json.dumps(cfg.prompt_format, sort_keys=True, default=str), cfg.max_length,
           cfg.max_prompt_length, cfg.per_device_train_batch_size)
    return _measured_length(key, store, ds, model_path, cfg)


SAMPLE_PAIRS = 256
_lengths: dict[tuple, float | None] = {}


def _measured_length(key: tuple, store, ds, model_path: str, cfg: RunConfig) -> float | None:
    if key in _lengths:
        return _lengths[key]
    try:
        tok = load_tokenizer(model_path)
        fmt = prompt_format_for(cfg, ds.prompt_format, model_path, tok)
        rows = render_pairs(store, ds.id, cfg.train_split, SAMPLE_PAIRS, fmt, tok, cfg)
    except (DPOLabError, OSError, ValueError):
        return None

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    lengths = []
    for r in rows:
        prompt = count(r["prompt"])
        reply = max(count(r["chosen"]), count(r["rejected"]))
        lengths.append(min(cfg.max_length, prompt + reply))
    size = max(1, cfg.per_device_train_batch_size)
    groups = [max(lengths[i:i + size]) for i in range(0, len(lengths), size)]
    _lengths[key] = sum(groups) / len(groups) if groups else None
    return _lengths[key]


def _fix(cfg: RunConfig) -> str:
    tips = []
    if cfg.method == "full":
        tips.append("use method: lora (no reference copy, tiny optimizer state)")
    if not cfg.gradient_checkpointing:
        tips.append("set gradient_checkpointing: true")
    if cfg.per_device_train_batch_size > 1:
        tips.append(f"lower per_device_train_batch_size to {cfg.per_device_train_batch_size // 2}"
                    " and raise gradient_accumulation_steps to keep the effective batch")
    tips.append(f"lower max_length (now {cfg.max_length})")
    return "Try: " + "; ".join(tips) + "."


def _flops_per_second(device, precision: str) -> float:
    """Achievable training throughput (about a third of peak on GPUs; measured on CPUs)."""
    if device.kind == "cuda":
        name = device.name.lower()
        peak = 990e12 if "h100" in name or "h200" in name else 312e12 if "a100" in name else 60e12
        if precision == "fp32":
            peak /= 8
        return peak * 0.35 * max(1, device.count)
    if device.kind == "mps":
        return 2e12
    # training reaches about 40% of this CPU's measured fp32 matmul rate (2 s per step measured
    # for cpu-quick-demo on 2 cores against ~160 GFLOP/s of matmul)
    return CPU_TRAINING_EFFICIENCY * _cpu_matmul_flops()


CPU_TRAINING_EFFICIENCY = 0.4


@functools.cache
def _cpu_matmul_flops() -> float:
    """This CPU's fp32 matmul throughput on a transformer-sized product (~30 ms, once)."""
    import time

    import torch

    a, b = torch.randn(512, 576), torch.randn(576, 1536)
    a @ b
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        best = min(best, (time.perf_counter() - started) / 4)
    return 2 * 512 * 576 * 1536 / best
