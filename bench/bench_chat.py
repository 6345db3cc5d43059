"""Side-by-side chat cost: memory and time of base + LoRA together against one model alone.

    python bench/bench_chat.py [--model SPEC] [--max-new-tokens N] [--repeats N] [--json]

Uses the default model when it is prepared, else builtin:tiny. The LoRA adapter is made on the
spot (random weights, q_proj/v_proj) in a temporary run folder, so nothing needs training first.
Targets from issue 7: memory at most 1.1x, both answers at most 1.3x the time of one.

Every timing is taken twice, interleaved: with the lab's small-rows decode product
(`dpo_core/kernels.py`, on by default on CPU) and with PyTorch's stock one, so the output shows
what that product wins on this machine; the ratios against "one answer" compare like with like.
A decode step's cost for 2 rows against 1 row (one new token per side) bounds what batching the
two sides can win: about 1x on a GPU, and on CPU only with the small-rows product.

Measured on the default model (2-core AMD EPYC, 48 greedy tokens, medians of 5 interleaved
repeats): one answer 1.99 s (stock 3.11 s), both answers batched 2.58 s (stock 5.65 s); both
against one answer of the plain base 1.30x, against one answer of the tuned (LoRA) side alone
1.21x (a 3-repeat run: 1.36x and 1.26x); a 2-row decode step 1.12x a 1-row step (stock 1.65x);
memory 1.007x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpo_core.chat.cache import ModelCache  # noqa: E402
from dpo_core.chat.generate import generate  # noqa: E402
from dpo_core.chat.sampling import SamplingSettings  # noqa: E402
from dpo_core.chat.side_by_side import render_chat, side_by_side  # noqa: E402
from dpo_core.demo.kernels import use_small_rows_kernel  # noqa: E402
from dpo_core.models import (  # noqa: E402
    DEFAULT_SPEC,
    FORMAT_FILE,
    RUN_MODEL_FILE,
    TINY_SPEC,
    model_state,
    resolve_model,
)

PROMPT = "Give me three tips for improving my time management skills."


def make_adapter(base_spec: str, folder: Path) -> str:
    """A LoRA run folder for `base_spec` with perturbed weights; returns it as a spec."""
    import torch
    from peft import LoraConfig, get_peft_model

    loaded = resolve_model(base_spec)
    model = get_peft_model(loaded.model, LoraConfig(r=16, lora_alpha=32,
                                                    target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)  # as training saves it (final/ loads on its own)
    (folder / RUN_MODEL_FILE).write_text(json.dumps({"base": base_spec, "kind": "lora"}))
    (folder / FORMAT_FILE).write_text(json.dumps(loaded.prompt_format.to_dict()))
    return str(folder)


def tensor_bytes(*modules) -> int:
    """Bytes of distinct parameter and buffer storage across modules (shared weights once)."""
    seen, total = set(), 0
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
    return total


def timed(fns: dict, repeats: int) -> dict:
    """Median seconds of each function, run interleaved so background load hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def decode_step_ms(model, rows: int, context: int = 32, steps: int = 9) -> float:
    """Median time of one decode step (one new token per row on a filled KV cache)."""
    import torch

    ids = torch.randint(100, 1000, (rows, context))
    with torch.inference_mode():
        cache = model(input_ids=ids, use_cache=True).past_key_values
        new = torch.randint(100, 1000, (rows, 1))
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model(input_ids=new, past_key_values=cache, use_cache=True, logits_to_keep=1)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def kernel(models, on: bool):
    """A thunk that switches the small-rows product on or off for all models."""
    def switch():
        for model in models:
            use_small_rows_kernel(model, on)
    return switch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="base model spec (default: the default model if "
                        "prepared, else builtin:tiny)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spec = args.model or (DEFAULT_SPEC if model_state(DEFAULT_SPEC)["ready"] else TINY_SPEC)
    settings = SamplingSettings(greedy=True, max_new_tokens=args.max_new_tokens)

    with tempfile.TemporaryDirectory() as tmp:
        run = make_adapter(spec, Path(tmp) / "final")
        alone = ModelCache().get(spec)  # one model on its own, no adapter attached
        one_bytes = tensor_bytes(alone.model)
        prompt = render_chat(alone, [], PROMPT)
        cache = ModelCache()
        cache.get(spec)
        both_bytes = tensor_bytes(cache.get(run).model)
        models = [alone.model, cache.get(run).model]
        stock, small = kernel(models, False), kernel(models, True)

        def with_kernel(switch, fn):
            return lambda: (switch(), fn())

        one = lambda: generate(alone, prompt, settings)  # noqa: E731
        batched = lambda: side_by_side(cache, spec, run, [], [], PROMPT, settings)  # noqa: E731
        t = timed({
            "one": with_kernel(small, one),
            "one_tuned": with_kernel(small, lambda: generate(cache.get(run), prompt, settings)),
            "batched": with_kernel(small, batched),
            "sequential": with_kernel(small, lambda: side_by_side(
                cache, spec, run, [], [], PROMPT, settings, batch=False)),
            "one_stock": with_kernel(stock, one),
            "batched_stock": with_kernel(stock, batched),
        }, args.repeats)
        steps = {}
        for name, switch in (("stock", stock), ("small_rows", small)):
            switch()
            steps[name] = {rows: decode_step_ms(alone.model, rows) for rows in (1, 2)}
        small()
        check = side_by_side(cache, spec, run, [], [], PROMPT, settings)

    result = {
        "model": spec, "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
        "weight_copies": cache.weight_copies, "one_model_mb": round(one_bytes / 2**20, 1),
        "base_plus_lora_mb": round(both_bytes / 2**20, 1),
        "memory_ratio": round(both_bytes / one_bytes, 3),
        "one_answer_s": round(t["one"], 3), "both_batched_s": round(t["batched"], 3),
        "both_sequential_s": round(t["sequential"], 3),
        "time_ratio_batched": round(t["batched"] / t["one"], 2),
        # the tuned side alone runs through its LoRA layers, as the batch does
        "one_tuned_answer_s": round(t["one_tuned"], 3),
        "time_ratio_batched_vs_tuned_alone": round(t["batched"] / t["one_tuned"], 2),
        "time_ratio_sequential": round(t["sequential"] / t["one"], 2),
        "stock_one_answer_s": round(t["one_stock"], 3),
        "stock_both_batched_s": round(t["batched_stock"], 3),
        "stock_time_ratio_batched": round(t["batched_stock"] / t["one_stock"], 2),
        "one_answer_speedup_vs_stock": round(t["one_stock"] / t["one"], 2),
        "batched": check.batched, "tokens": [check.left.new_tokens, check.right.new_tokens],
        "decode_step_ms": {k: {r: round(v, 1) for r, v in d.items()} for k, d in steps.items()},
        "two_rows_vs_one_row_step": {k: round(d[2] / d[1], 2) for k, d in steps.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
