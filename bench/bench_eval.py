"""Batched pair scoring against one text per forward pass (the CHILDES script), same decisions.

    python bench/bench_eval.py [--model SPEC] [--limit N] [--batch-size N] [--scope full|reply]

Scores `prompt + " " + chosen` and `prompt + " " + rejected` of the CHILDES eval split
(../shared/data/childes-dpo/huggingface_dpo_format_eval.json, 7,548 pairs) with mean per-token
log-probability, both ways, and prints the times, the speed ratio and the accuracies. Exits 1
when any decision differs. Target from issue 6: at least 8x on the full split with the default
model on CPU. The batched side deduplicates texts, sorts by length, runs each pair's shared prefix
(prompt and speaker tag) once on a KV cache and applies the LM head to scored positions only.
It also prints this CPU's fp32 matmul throughput for one short text against a batch of texts:
the matmuls are most of the work, so that ratio (plus the saved prefix tokens) bounds the gain.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpo_core.evaluation.scoring import score_pairs  # noqa: E402
from dpo_core.formats import CHILDES_FORMAT  # noqa: E402
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC, model_state, resolve_model  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "childes-dpo" / \
    "huggingface_dpo_format_eval.json"


def one_text_per_forward(model, tokenizer, pairs: list[dict], scope: str) -> list[tuple]:
    """The CHILDES way: each text alone; full scope is minus the LM loss of the whole text."""
    import torch

    out = []
    with torch.inference_mode():
        for p in pairs:
            scores = []
            for reply in (p["chosen"], p["rejected"]):
                ids = tokenizer(p["prompt"] + " " + reply, return_tensors="pt")["input_ids"]
                if scope == "full":
                    scores.append(-float(model(input_ids=ids, labels=ids).loss))
                    continue
                prompt_ids = tokenizer(p["prompt"])["input_ids"]
                start = 0
                while start < len(prompt_ids) and prompt_ids[start] == int(ids[0, start]):
                    start += 1
                logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
                token_lp = logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
                scores.append(float(token_lp[max(start, 1) - 1:].mean()))
            out.append(tuple(scores))
    return out


def matmul_ceiling(hidden: int, inner: int, short: int = 21, long: int = 1024) -> dict:
    """fp32 matmul throughput of this CPU for one short text (short x hidden @ hidden x inner)
    and for a batch of texts (long rows): their ratio bounds what batching can win here."""
    import torch

    def gflops(rows: int) -> float:
        a, b = torch.randn(rows, hidden), torch.randn(hidden, inner)
        for _ in range(3):
            a @ b
        n = max(20, 200_000 // rows)
        t0 = time.perf_counter()
        for _ in range(n):
            a @ b
        return 2 * rows * hidden * inner * n / (time.perf_counter() - t0) / 1e9

    one, many = gflops(short), gflops(long)
    return {"gflops_one_text": round(one, 1), "gflops_batched": round(many, 1),
            "batching_ceiling": round(many / one, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model spec (default: the default model when prepared)")
    parser.add_argument("--data", default=str(DATA), help="TRL JSON pairs file")
    parser.add_argument("--limit", type=int, help="first N pairs only")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--scope", choices=("full", "reply"), default="full")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = args.model or (DEFAULT_SPEC if model_state()["ready"] else TINY_SPEC)
    if not Path(args.data).is_file():
        print(f"error: {args.data} is not present (../shared/data)", file=sys.stderr)
        return 2
    pairs = json.loads(Path(args.data).read_text())[:args.limit]
    loaded = resolve_model(spec)
    model, tok = loaded.model, loaded.tokenizer

    t0 = time.perf_counter()
    batched = score_pairs(model, tok, CHILDES_FORMAT, pairs, "mean-logp", args.scope,
                          args.batch_size)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = one_text_per_forward(model, tok, pairs, args.scope)
    t_single = time.perf_counter() - t0

    dec_b = [c > r for c, r in batched]
    dec_s = [c > r for c, r in single]
    differ = [i for i, (a, b) in enumerate(zip(dec_b, dec_s, strict=False)) if a != b]
    max_diff = max(abs(x - y) for pb, ps in zip(batched, single, strict=True)
                   for x, y in zip(pb, ps, strict=True))
    result = {"model": spec, "pairs": len(pairs), "scope": args.scope,
              "batch_size": args.batch_size, "threads": torch.get_num_threads(),
              "one_text_per_forward_s": round(t_single, 2), "batched_s": round(t_batched, 2),
              "speedup": round(t_single / t_batched, 2),
              "accuracy": sum(dec_b) / len(dec_b), "accuracy_reference": sum(dec_s) / len(dec_s),
              "decisions_differing": len(differ), "max_abs_score_diff": max_diff,
              **matmul_ceiling(model.config.hidden_size,
                               getattr(model.config, "intermediate_size", 4 * model.config.hidden_size))}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:24s} {value}")
    if differ:
        print(f"FAIL: {len(differ)} decisions differ, first at pair {differ[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
