"""Side-by-side chat cost: memory and time of base + LoRA together against one model alone.

    python bench/bench_chat.py [--model SPEC] [--max-new-tokens N] [--repeats N] [--json]

Uses the default model when it is prepared, else builtin:tiny. The LoRA adapter is made on the
spot (random weights, q_proj/v_proj) in a temporary run folder, so nothing needs training first.
Targets from issue 7: memory at most 1.1x, both answers at most 1.3x the time of one.
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

from dpo_core.generation import ModelCache, SamplingSettings, generate, render_chat, side_by_side  # noqa: E402
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


def rows_cost(model) -> float:
    """Time of the model's MLP up-projection and LM head on 2 rows against 1 row."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    weights = [m.weight for m in base.modules()
               if isinstance(m, torch.nn.Linear) and "up_proj" in str(m)][:1] or []
    weights = [w.detach() for w in weights] + [base.get_output_embeddings().weight.detach()]
    cost = {}
    with torch.inference_mode():
        for rows in (1, 2):
            total = 0.0
            for w in weights:
                x = torch.randn(rows, w.shape[1], dtype=w.dtype, device=w.device)
                for _ in range(5):
                    torch.nn.functional.linear(x, w)
                n = 200
                t0 = time.perf_counter()
                for _ in range(n):
                    torch.nn.functional.linear(x, w)
                total += (time.perf_counter() - t0) / n
            cost[rows] = total
    return round(cost[2] / cost[1], 2)


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
        t = timed({
            "one": lambda: generate(alone, prompt, settings),
            "batched": lambda: side_by_side(cache, spec, run, [], [], PROMPT, settings),
            "sequential": lambda: side_by_side(cache, spec, run, [], [], PROMPT, settings,
                                               batch=False),
        }, args.repeats)
        check = side_by_side(cache, spec, run, [], [], PROMPT, settings)
        two_rows = rows_cost(cache.get(run).model)

    result = {
        "model": spec, "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
        "weight_copies": cache.weight_copies, "one_model_mb": round(one_bytes / 2**20, 1),
        "base_plus_lora_mb": round(both_bytes / 2**20, 1),
        "memory_ratio": round(both_bytes / one_bytes, 3),
        "one_answer_s": round(t["one"], 3), "both_batched_s": round(t["batched"], 3),
        "both_sequential_s": round(t["sequential"], 3),
        "time_ratio_batched": round(t["batched"] / t["one"], 2),
        "time_ratio_sequential": round(t["sequential"] / t["one"], 2),
        "batched": check.batched, "tokens": [check.left.new_tokens, check.right.new_tokens],
        # a decode step is one row per side: what 2 rows cost against 1 on this device bounds
        # what batching the two sides can win (about 1x on a GPU; CPU GEMM is another story)
        "two_rows_vs_one_row_step": two_rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
