"""A resource estimate before launch: parameters trained, memory per part, time per step and
for the whole run.

Memory is read from the model's config.json (no weights loaded), in the dtypes the worker
loads: fp32 master weights with LoRA (bf16 runs autocast), bf16 weights for a bf16 full
fine-tune, 4-bit for QLoRA; a full fine-tune keeps a second copy as its reference unless its
log-probs are precomputed. Time comes two ways: `estimate` is instant (FLOPs over this device's
measured matmul rate: rough, for a form that updates as you type), and `estimate(...,
measure=True)` times the run's real step on this machine (`measure.py`: median of repeats). Both
add up the whole run (start-up, steps, evaluations, samples, checkpoints) with a range.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.datasets import count_pairs, dataset_version, get_dataset
from ..device import detect_device
from ..errors import DPOLabError, ModelError
from ..models import DEFAULT_SPEC, builtin_dir, is_ready, load_tokenizer, resolve_path
from ..store import open_store
from ..workspace import get_workspace
from .config import ALL_PROJECTIONS, AUTO, AUTO_FIELDS, RunConfig, resolve_precision
from .freeze import prompt_format_for, render_pairs, total_steps

GB = 2**30
# SmolLM2-135M-Instruct, so the default model can be estimated before it is prepared
SMOLLM2_CONFIG = {"hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536,
                  "vocab_size": 49152, "num_attention_heads": 9, "num_key_value_heads": 3,
                  "tie_word_embeddings": True}
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ROUGH = (0.5, 2.0)      # the instant estimate's range: within 2x either way
MEASURED = (0.85, 1.2)  # around a measured step: what the repeats do not see (data loading, logs)


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
    run_seconds: dict = field(default_factory=dict)  # total, low, high, parts: {startup, ...}
    measured: dict | None = None  # measure.Measured as a dict, when the step was timed

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.memory_gb.items())
        how = (f"measured here, median of {self.measured['repeats']} (range "
               f"{self.measured['step_low_s']:.2f}-{self.measured['step_high_s']:.2f} s)"
               if self.measured else "rough, from FLOPs and this device's matmul rate")
        lines = [f"parameters: {self.total_params / 1e6:.1f}M, trained "
                 f"{self.trained_params / 1e6:.2f}M "
                 f"({100 * self.trained_params / max(1, self.total_params):.2f}%)",
                 f"memory (GB): {parts}; total {self.total_gb:.2f} of {self.device_gb:.0f}",
                 f"time per optimizer step: ~{self.seconds_per_step:.2f} s ({how})"]
        if self.run_seconds:
            r = self.run_seconds
            lines.append(f"whole run: ~{duration(r['total'])} ({duration(r['low'])} to "
                         f"{duration(r['high'])}): " + ", ".join(
                             f"{k} {duration(v)}" for k, v in r["parts"].items() if v))
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])


def duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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

        try:
            data = AutoConfig.from_pretrained(path).to_dict()
        except (OSError, ValueError) as exc:
            raise ModelError(f"Could not read the config of '{spec}' from the Hugging Face hub "
                             f"({type(exc).__name__}).", "Check the id and your network, or use "
                             f"a local folder or {DEFAULT_SPEC} (works offline).") from exc
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


def estimate(cfg: RunConfig, workspace=None, device=None, store=None,
             measure: bool = False, repeats: int = 3, progress=None) -> Estimate:
    """Memory and time for one run of `cfg` on `device` (detected when not given).

    Time counts the tokens a step really runs: each batch is padded to its longest pair, measured
    on up to SAMPLE_PAIRS rendered pairs of the train split when the dataset and the model's
    tokenizer are at hand (max_length otherwise, the worst case). With `measure`, the step (and
    an evaluation batch, a sample token, a checkpoint) is timed on this machine instead.
    """
    if device is None:
        device = detect_device()
    cfg = settled(cfg, device)
    shape = model_shape(cfg.model, workspace)
    total, proj = count_params(shape)
    trained = total if cfg.method == "full" else _lora_params(cfg, shape, proj)
    mem = _memory(cfg, shape, total, trained, resolve_precision(cfg, device))
    total_gb = sum(mem.values()) * SLACK
    device_gb = device.memory_gb if device.kind == "cuda" else device.memory_gb * 0.8
    length = _padded_length(cfg, workspace, store) or cfg.max_length
    measured = None
    if measure:
        from .measure import measure as time_it

        measured = time_it(cfg, workspace, store, device, repeats, progress).to_dict()
        seconds = measured["step_s"]
    else:
        seqs = 2 * cfg.per_device_train_batch_size  # chosen and rejected
        tokens = seqs * length * cfg.gradient_accumulation_steps
        ref = 0 if cfg.precompute_ref_log_probs else 2  # the reference's forward pass
        recompute = 2 if cfg.gradient_checkpointing else 0  # a second forward in backward
        flops = tokens * total * ((6 if cfg.method == "full" else 4) + ref + recompute)
        seconds = flops / _flops_per_second(device, resolve_precision(cfg, device))
    est = Estimate(total, int(trained), {k: round(v, 3) for k, v in mem.items()},
                   round(total_gb, 3), round(device_gb, 1), round(seconds, 3),
                   fits=device_gb <= 0 or total_gb <= device_gb, measured=measured)
    est.run_seconds = whole_run(cfg, seconds, measured, _pair_counts(cfg, workspace, store),
                                total / 1e6)
    if not est.fits:
        est.warnings.append(f"needs ~{total_gb:.1f} GB but the {device.kind} has "
                            f"{device_gb:.1f} GB. " + _fix(cfg))
    return est


SLACK = 1.15  # allocator slack, buffers, CUDA context


def settled(cfg: RunConfig, device) -> RunConfig:
    """`cfg` with its 'auto' execution settings chosen as a launch would without the data
    (a launch plans with the train pairs' lengths, `runs.plan_run`)."""
    from .planner import plan

    if all(getattr(cfg, name) != AUTO for name in AUTO_FIELDS):
        return cfg
    return plan(cfg, None, device, lambda c: memory_gb(c, None, device)).apply(cfg)


def memory_gb(cfg: RunConfig, workspace=None, device=None) -> float:
    """Total GB one run of `cfg` needs (the planner's memory model); `cfg`'s execution settings
    must be concrete."""
    device = device or detect_device()
    shape = model_shape(cfg.model, workspace)
    total, proj = count_params(shape)
    trained = total if cfg.method == "full" else _lora_params(cfg, shape, proj)
    return sum(_memory(cfg, shape, total, trained, resolve_precision(cfg, device)).values()) \
        * SLACK


def _lora_params(cfg: RunConfig, shape: dict, proj: dict) -> int:
    targets = cfg.lora.target_modules
    names = ALL_PROJECTIONS if targets in ("all-linear", ["all-linear"]) else (
        targets if isinstance(targets, list) else targets.split(","))
    return shape["num_hidden_layers"] * sum(cfg.lora.r * (i + o) for n, (i, o) in proj.items()
                                            if n in names)


def _memory(cfg: RunConfig, shape: dict, total: int, trained: int, precision: str) -> dict:
    """GB per part, in the dtypes the worker uses (`worker.load_policy`)."""
    n_layers, h = shape["num_hidden_layers"], shape["hidden_size"]
    half_weights = cfg.method == "full" and precision == "bf16"  # else fp32 master weights
    weight_bytes = 0.55 if cfg.method == "qlora" else 2 if half_weights else 4
    state_bytes = 2 if half_weights else 4  # gradients and each AdamW moment: the params' dtype
    act_bytes = BYTES[precision]
    seqs = 2 * cfg.per_device_train_batch_size  # chosen and rejected
    per_token_layer = (2 if cfg.gradient_checkpointing is True else 18) * h * act_bytes
    return {
        "weights": total * weight_bytes / GB,
        "gradients": trained * state_bytes / GB,
        "optimizer": trained * 2 * state_bytes / GB,  # AdamW: two moments
        "activations": seqs * _length(cfg) * n_layers * per_token_layer / GB,
        # LoRA's reference is the base with adapters off; precomputed log-probs need none; a
        # full fine-tune's is a second copy of the weights
        "reference": total * weight_bytes / GB
        if cfg.method == "full" and cfg.precompute_ref_log_probs is not True else 0.0,
    }


def _length(cfg: RunConfig) -> int:
    """max_length, TRL's default where the planner has not chosen it yet."""
    return cfg.max_length if cfg.max_length != AUTO else 1024


def whole_run(cfg: RunConfig, step_s: float, measured: dict | None, pairs: tuple[int, int],
              millions: float) -> dict:
    """Seconds for the whole run, by part, with a range: start-up (loading, the reference's
    precomputed log-probs), optimizer steps, evaluations, sample generations, checkpoints."""
    n_train, n_eval = pairs
    steps = total_steps(cfg, n_train) if n_train or cfg.max_steps > 0 else 0
    if measured:
        load, eval_batch, token, save, ref_pair = (
            measured["load_s"], measured["eval_batch_s"], measured["token_s"],
            measured["checkpoint_s"], measured["ref_pair_s"])
    else:  # rough: from the step time and the model's size
        micro = step_s / max(1, cfg.gradient_accumulation_steps)
        load, eval_batch = 6.0 + 0.02 * millions, micro * cfg.per_device_eval_batch_size / max(
            1, cfg.per_device_train_batch_size) / 2
        token, save = micro / 8, 0.5 + 0.005 * millions
        ref_pair = eval_batch / 2 / max(1, cfg.per_device_eval_batch_size)
    evals = steps // cfg.eval_steps if cfg.eval_steps > 0 and n_eval else 0
    eval_batches = math.ceil(n_eval / max(1, cfg.per_device_eval_batch_size))
    rounds = (1 + (steps // cfg.sample_every if cfg.sample_every else 0)
              + (0 if cfg.sample_every and steps % cfg.sample_every == 0 else 1))
    parts = {
        "startup": load + (ref_pair * n_train if cfg.precompute_ref_log_probs is True else 0.0),
        "steps": steps * step_s,
        "evaluations": evals * eval_batches * eval_batch,
        "samples": rounds * min(cfg.sample_prompts, n_eval or n_train) *
        cfg.sample_max_new_tokens * token,
        "checkpoints": (steps // cfg.save_steps + 1) * save,
    }
    total = sum(parts.values())
    low, high = MEASURED if measured else ROUGH
    if measured and measured["step_s"]:
        spread = steps * (measured["step_high_s"] - measured["step_s"])
        spread_low = steps * (measured["step_s"] - measured["step_low_s"])
        return {"total": total, "low": (total - spread_low) * low,
                "high": (total + spread) * high, "parts": parts}
    return {"total": total, "low": total * low, "high": total * high, "parts": parts}


def _pair_counts(cfg: RunConfig, workspace, store) -> tuple[int, int]:
    """(train pairs, eval pairs) the run would freeze; (0, 0) when the dataset is not at hand."""
    try:
        store = store or open_store((workspace or get_workspace()).db_path)
        ds = get_dataset(store, cfg.dataset)
        n_train = count_pairs(store, ds.id, cfg.train_split)
        n_eval = count_pairs(store, ds.id, cfg.eval_split) if cfg.eval_split else 0
    except DPOLabError:
        return 0, 0
    return (min(n_train, cfg.max_train_pairs or n_train),
            min(n_eval, cfg.max_eval_pairs or n_eval))


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
           cfg.max_prompt_length, cfg.per_device_train_batch_size, cfg.batch_order)
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
    if cfg.batch_order == "by_length":  # batches of neighbours in length (planner.py)
        lengths.sort()
    groups = [max(lengths[i:i + size]) for i in range(0, len(lengths), size)]
    _lengths[key] = sum(groups) / len(groups) if groups else None
    return _lengths[key]


def _fix(cfg: RunConfig) -> str:
    tips = []
    if cfg.method == "full":
        tips.append("use method: lora (no reference copy, tiny optimizer state)")
    if cfg.gradient_checkpointing is not True:
        tips.append("set gradient_checkpointing: true")
    if cfg.per_device_train_batch_size > 1:
        tips.append(f"lower per_device_train_batch_size to {cfg.per_device_train_batch_size // 2}"
                    " and raise gradient_accumulation_steps to keep the effective batch")
    tips.append(f"lower max_length (now {_length(cfg)})")
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
