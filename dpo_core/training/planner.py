"""The execution planner: between a RunConfig and TRL, one function chooses how the work is
executed, with a one-line reason per choice, from the run's data, model and device.

What it may choose (each only while the config says `auto`; a value set in the config is kept):
gradient checkpointing (only when memory needs it), `max_length` (from the train pairs' token
lengths: the longest, or a percentile), the batch order (length-grouped when that pads less),
reference log-probs computed once (when the run passes over its pairs), and on CUDA the
attention implementation and Liger kernels. It never changes what is optimised:
learning rate, beta, batch sizes, steps, epochs and seed stay as set. `execution: trl-defaults`
gives TRL 1.16's own defaults instead, for comparison.

A pair longer than `max_length` would lose the end of its reply (TRL keeps the start). Such
pairs are counted before launch; `too_long: drop` (the default) leaves them out of the run,
`truncate` trains on them cut, as TRL would.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import statistics
from dataclasses import asdict, dataclass, field

from .config import AUTO, RunConfig, resolve_precision

PLANNED = ("max_length", "batch_order", "precompute_ref_log_probs", "attn_implementation",
           "use_liger_kernel", "torch_compile", "gradient_checkpointing")
# TRL 1.16's DPOConfig defaults (and transformers' attention default) for the same settings
TRL_DEFAULTS = {"gradient_checkpointing": True, "max_length": 1024, "batch_order": "random",
                "precompute_ref_log_probs": False, "attn_implementation": "sdpa",
                "use_liger_kernel": False, "torch_compile": False, "padding_free": False,
                "precision": "bf16"}
MEMORY_HEADROOM = 0.85   # plan to use at most this share of the device's memory
GROUPING_GAIN = 0.05     # group by length when it removes at least 5 points of padding
LENGTH_MULTIPLE = 8      # max_length rounded up to a multiple of this


@dataclass
class Choice:
    """One execution setting: its value, why, and where it came from."""

    setting: str
    value: object
    reason: str
    source: str  # "planned", "config" (set by the user) or "trl-defaults"
    trl_default: object = None

    def line(self) -> str:
        origin = {"planned": "", "config": " (set in the config)",
                  "trl-defaults": " (TRL default)"}[self.source]
        return f"{self.setting}: {self.value}{origin} - {self.reason}"


@dataclass
class Lengths:
    """Token lengths of the train pairs as rendered (prompt after max_prompt_length; each reply
    with the EOS token TRL appends)."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]

    def pairs(self) -> list[int]:
        """Each pair's longest sequence: prompt + its longer reply."""
        return [p + max(c, r) for p, c, r in zip(self.prompt, self.chosen, self.rejected,
                                                 strict=True)]

    def as_trained(self, max_length: int, too_long: str) -> Lengths:
        """The lengths TRL sees: pairs over max_length left out (drop) or cut (truncate)."""
        keep = [i for i, n in enumerate(self.pairs()) if too_long != "drop" or n <= max_length]

        def cut(p: int, r: int) -> int:
            return max(0, min(r, max_length - p))

        return Lengths([min(self.prompt[i], max_length) for i in keep],
                       [cut(self.prompt[i], self.chosen[i]) for i in keep],
                       [cut(self.prompt[i], self.rejected[i]) for i in keep])

    def summary(self) -> dict:
        total = sorted(self.pairs())
        if not total:
            return {"pairs": 0}
        return {"pairs": len(total), "median": statistics.median(total),
                "p95": percentile(total, 95), "longest": total[-1],
                "prompt_longest": max(self.prompt), "reply_longest": max(
                    max(self.chosen), max(self.rejected))}


@dataclass
class Plan:
    """What the run executes with; `apply` gives the concrete RunConfig."""

    execution: str
    choices: dict[str, Choice] = field(default_factory=dict)
    lengths: dict = field(default_factory=dict)
    too_long: int = 0        # train pairs longer than max_length
    too_long_action: str = "drop"
    padding: dict = field(default_factory=dict)  # {"random": share, "by_length": share}
    warnings: list[str] = field(default_factory=list)
    requested: dict = field(default_factory=dict)  # the planned fields as the config set them

    def apply(self, cfg: RunConfig) -> RunConfig:
        """`cfg` with every planned setting concrete (the choices that are not config fields,
        such as padding_free, are only reported)."""
        return dataclasses.replace(cfg, **{k: c.value for k, c in self.choices.items()
                                           if hasattr(cfg, k)})

    def explain(self) -> list[str]:
        lines = [c.line() for c in self.choices.values()]
        if self.too_long:
            lines.append(self.too_long_line())
        if self.padding:
            lines.append(f"padding: {self.padding['random']:.0%} of each batch in random order, "
                         f"{self.padding['by_length']:.0%} grouped by length")
        return lines + [f"warning: {w}" for w in self.warnings]

    def too_long_line(self) -> str:
        """How many train pairs are longer than max_length, what happens to them, the fix."""
        if not self.too_long:
            return ""
        limit = self.choices["max_length"].value
        longest = self.lengths.get("longest", limit)
        what = ("left out of the run (too_long: drop)" if self.too_long_action == "drop" else
                "trained on with the end of their replies cut (too_long: truncate)")
        return (f"{self.too_long} train pair(s) are longer than max_length {limit}: {what}; "
                f"raise max_length to {LENGTH_MULTIPLE * math.ceil(longest / LENGTH_MULTIPLE)} "
                "to keep them whole")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        return cls(**{**data, "choices": {k: Choice(**c) for k, c in
                                          (data.get("choices") or {}).items()}})


def percentile(sorted_values: list[int], q: float) -> int:
    """The q-th percentile (nearest rank) of sorted values."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# ---------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------
def plan(cfg: RunConfig, lengths: Lengths | None, device, memory=None,
         cache_hit: bool = False) -> Plan:
    """The execution plan of `cfg` on `device` for train pairs of these `lengths` (None when the
    data cannot be read yet). `memory(cfg) -> GB` is the estimate's memory model; `cache_hit`:
    the reference log-probs of these pairs are cached already."""
    out = Plan(cfg.execution, too_long_action=cfg.too_long,
               requested={k: getattr(cfg, k) for k in (*PLANNED, "precision")})
    out.lengths = lengths.summary() if lengths else {}
    if cfg.execution == "trl-defaults":
        for name in PLANNED:
            out.choices[name] = _trl_default(cfg, name)
    else:
        for name, choose in _PLANNERS.items():
            # each choice sees the ones made before it (checkpointing, last, sees them all)
            so_far = out.apply(cfg)
            out.choices[name] = _given(cfg, name) or choose(so_far, lengths, device, memory,
                                                             cache_hit)
    out.choices["padding_free"] = Choice(
        "padding_free", False, "TRL 1.16 has padding-free DPO batches switched off (it warns "
        "and pads); length-grouped batches cut the padding instead", "planned", False)
    out.choices["precision"] = _precision(cfg, device)
    max_length = out.choices["max_length"].value
    if lengths and lengths.prompt:
        out.too_long = sum(n > max_length for n in lengths.pairs())
        out.padding = padding_shares(lengths.as_trained(max_length, cfg.too_long), cfg)
    out.warnings.extend(_too_small(out.apply(cfg), device, memory))
    return out


def unplanned(cfg: RunConfig) -> RunConfig:
    """A config with no plan (a run folder frozen before the planner, a recipe mapped on its
    own): each 'auto' as the lab ran it before, TRL's max_length where none was set."""
    fallback = {"max_length": TRL_DEFAULTS["max_length"], "gradient_checkpointing": False,
                "precompute_ref_log_probs": False, "use_liger_kernel": False,
                "torch_compile": False}
    return dataclasses.replace(cfg, **{k: v for k, v in fallback.items()
                                       if getattr(cfg, k) == AUTO})


def _given(cfg: RunConfig, name: str) -> Choice | None:
    value = getattr(cfg, name)
    if value == AUTO:
        return None
    return Choice(name, value, "kept as set", "config", TRL_DEFAULTS[name])


def _trl_default(cfg: RunConfig, name: str) -> Choice:
    given = _given(cfg, name)
    return given or Choice(name, TRL_DEFAULTS[name], "TRL 1.16's default (execution: "
                           "trl-defaults)", "trl-defaults", TRL_DEFAULTS[name])


def _precision(cfg: RunConfig, device) -> Choice:
    value = resolve_precision(cfg, device)
    if cfg.precision != AUTO:
        return Choice("precision", value, "kept as set", "config", TRL_DEFAULTS["precision"])
    why = {"bf16": "the GPU supports bf16", "fp16": "the GPU has no bf16; fp16 with loss "
           "scaling", "fp32": f"the {device.kind} trains in fp32"}.get(value, "the device's")
    return Choice("precision", value, why + " (the same in both executions: precision changes "
                  "the numbers, not only the speed)", "planned", TRL_DEFAULTS["precision"])


def _checkpointing(cfg, lengths, device, memory, _hit) -> Choice:
    default = TRL_DEFAULTS["gradient_checkpointing"]
    if memory is None:
        return Choice("gradient_checkpointing", False, "memory unknown; off (about 30% faster)",
                      "planned", default)
    budget = _budget_gb(device)
    without = memory(dataclasses.replace(cfg, gradient_checkpointing=False))
    if without <= budget:
        return Choice("gradient_checkpointing", False,
                      f"activations fit: ~{without:.1f} GB of {budget:.1f} GB usable without it, "
                      "and recomputing them would cost ~30% per step", "planned", default)
    with_it = memory(dataclasses.replace(cfg, gradient_checkpointing=True))
    return Choice("gradient_checkpointing", True,
                  f"needed: ~{without:.1f} GB without it, ~{with_it:.1f} GB with it, "
                  f"{budget:.1f} GB usable", "planned", default)


def _max_length(cfg, lengths, device, memory, _hit) -> Choice:
    default = TRL_DEFAULTS["max_length"]
    if not lengths or not lengths.prompt:
        return Choice("max_length", default, "the train pairs could not be measured yet; "
                      "TRL's default", "planned", default)
    total = sorted(lengths.pairs())
    q = cfg.length_percentile
    target = percentile(total, q)
    value = max(8, LENGTH_MULTIPLE * math.ceil(target / LENGTH_MULTIPLE))
    where = "the longest train pair" if q >= 100 else f"the {q:g}th percentile of train pairs"
    return Choice("max_length", value, f"{where} is {target} tokens (prompt + longer reply + "
                  "EOS): no pair is cut" if q >= 100 else f"{where} is {target} tokens "
                  "(prompt + longer reply + EOS)", "planned", default)


def _batch_order(cfg, lengths, device, memory, _hit) -> Choice:
    default = TRL_DEFAULTS["batch_order"]
    if not lengths or len(lengths.prompt) < 2 * cfg.per_device_train_batch_size:
        return Choice("batch_order", "random", "too few pairs to group", "planned", default)
    shares = padding_shares(lengths.as_trained(cfg.max_length, cfg.too_long), cfg)
    if shares["random"] - shares["by_length"] >= GROUPING_GAIN:
        return Choice("batch_order", "by_length",
                      f"padding {shares['random']:.0%} of each batch in random order, "
                      f"{shares['by_length']:.0%} grouped by length (groups still shuffled, "
                      "seeded per epoch)", "planned", default)
    return Choice("batch_order", "random",
                  f"grouping by length would save little padding ({shares['random']:.0%} -> "
                  f"{shares['by_length']:.0%})", "planned", default)


def _reference(cfg, lengths, device, memory, cache_hit) -> Choice:
    default = TRL_DEFAULTS["precompute_ref_log_probs"]
    if cfg.method == "qlora":
        return Choice("precompute_ref_log_probs", False, "QLoRA keeps its reference as the "
                      "4-bit base with adapters off", "planned", default)
    if cache_hit:
        return Choice("precompute_ref_log_probs", True, "the reference log-probs of these "
                      "exact pairs are cached already", "planned", default)
    n = len(lengths.prompt) if lengths else 0
    seen = _pairs_seen(cfg, n)
    if n and seen > n:
        return Choice("precompute_ref_log_probs", True,
                      f"the run passes {seen / n:.1f} times over its {n} pairs: the reference "
                      "runs once per pair instead of every step (and is cached for resumes and "
                      "sweeps)", "planned", default)
    return Choice("precompute_ref_log_probs", False,
                  f"the run sees {seen} of its {n} pairs at most once: a reference pass over "
                  "every pair first would cost as much as it saves, plus its set-up" if n
                  else "the number of pairs is not known yet", "planned", default)


def _attention(cfg, lengths, device, memory, _hit) -> Choice:
    default = TRL_DEFAULTS["attn_implementation"]
    if device.kind == "cuda" and installed("flash_attn") and device.precision == "bf16":
        return Choice("attn_implementation", "flash_attention_2", "FlashAttention 2 is "
                      "installed and the GPU runs bf16", "planned", default)
    why = ("PyTorch's fused scaled-dot-product attention (flash_attn is not installed)"
           if device.kind == "cuda" else "PyTorch's scaled-dot-product attention on this "
           f"{device.kind}")
    return Choice("attn_implementation", "sdpa", why, "planned", default)


def _liger(cfg, lengths, device, memory, _hit) -> Choice:
    default = TRL_DEFAULTS["use_liger_kernel"]
    if device.kind != "cuda":
        return Choice("use_liger_kernel", False, "Liger's kernels are Triton (CUDA only)",
                      "planned", default)
    if not installed("liger_kernel"):
        return Choice("use_liger_kernel", False, "liger-kernel is not installed", "planned",
                      default)
    return Choice("use_liger_kernel", True, "fused RMSNorm, RoPE and SwiGLU kernels (TRL 1.16 "
                  "keeps its own chunked log-prob head for DPO): less activation memory",
                  "planned", default)


def _compile(cfg, lengths, device, memory, _hit) -> Choice:
    return Choice("torch_compile", False, "DPO batches change shape every step, so compiled "
                  "graphs recompile; not measured to win for these runs (set it to try)",
                  "planned", TRL_DEFAULTS["torch_compile"])


_PLANNERS = {"max_length": _max_length, "batch_order": _batch_order,
             "precompute_ref_log_probs": _reference, "attn_implementation": _attention,
             "use_liger_kernel": _liger, "torch_compile": _compile,
             "gradient_checkpointing": _checkpointing}


def _pairs_seen(cfg: RunConfig, n: int) -> int:
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps \
        * max(1, cfg.num_processes)
    if cfg.max_steps > 0:
        return cfg.max_steps * per_step
    return int(n * cfg.num_train_epochs)


def _budget_gb(device) -> float:
    usable = device.memory_gb if device.kind == "cuda" else device.memory_gb * 0.8
    return usable * MEMORY_HEADROOM


def _too_small(cfg: RunConfig, device, memory) -> list[str]:
    """A GPU too small for full fine-tuning: LoRA proposed with the numbers."""
    if memory is None or cfg.method != "full" or device.kind != "cuda":
        return []
    full = memory(dataclasses.replace(cfg, gradient_checkpointing=True))
    budget = _budget_gb(device)
    if full <= budget:
        return []
    lora = memory(dataclasses.replace(cfg, method="lora", gradient_checkpointing=False))
    advice = "set method: lora" if lora <= budget else \
        "more than fits too: set method: qlora (4-bit base) or use a larger GPU"
    return [f"full fine-tuning needs ~{full:.1f} GB even with gradient checkpointing, and this "
            f"GPU has {budget:.1f} GB usable; LoRA would need ~{lora:.1f} GB: {advice}"]


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------------------
def padding_shares(lengths: Lengths, cfg: RunConfig) -> dict[str, float]:
    """The share of each batch that is padding over one epoch, in random order and grouped by
    length (the order `transformers.LengthGroupedSampler` gives: groups of batch x accumulation
    sorted within shuffled mega-batches), with the run's seed. A batch is its chosen and
    rejected sequences, each padded to the batch's longest."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    batch = max(1, cfg.per_device_train_batch_size)
    pairs = lengths.pairs()
    if not pairs:
        return {"random": 0.0, "by_length": 0.0}
    random_order = torch.randperm(len(pairs),
                                  generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    grouped = get_length_grouped_indices(pairs, batch * cfg.gradient_accumulation_steps,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    return {"random": _padding(lengths, random_order, batch),
            "by_length": _padding(lengths, grouped, batch)}


def _padding(lengths: Lengths, order: list[int], size: int) -> float:
    real = padded = 0
    for i in range(0, len(order), size):
        batch = order[i:i + size]
        seqs = [lengths.prompt[j] + lengths.chosen[j] for j in batch] + \
               [lengths.prompt[j] + lengths.rejected[j] for j in batch]
        real += sum(seqs)
        padded += max(seqs) * len(seqs)
    return 1 - real / padded if padded else 0.0
