"""Batched generation against one prompt at a time, as the pair builders use it.

    python bench/bench_generate.py [--model SPEC] [--batch N] [--max-new-tokens N] [--json]

Renders the first CHILDES-like adult turns of assets/demo_childes_pairs.csv with the model's
prompt format, then generates greedily: once as one left-padded batch (generate_batch) and once
prompt by prompt (generate). Prints both times, the ratio (issue 8: at least 3x on CPU at batch
8), and whether the batched answers equal the one-at-a-time answers.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dpo_core.chat.generate import generate, generate_batch  # noqa: E402
from dpo_core.chat.sampling import SamplingSettings  # noqa: E402
from dpo_core.formats import strip_tag  # noqa: E402
from dpo_core.models import DEFAULT_SPEC, resolve_model  # noqa: E402

PAIRS_CSV = REPO / "assets" / "demo_childes_pairs.csv"
TARGET_RATIO = 3.0


def childes_prompts(n: int) -> list[str]:
    """The adult turns (speaker tag removed) of the first `n` demo CHILDES pairs."""
    with PAIRS_CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [strip_tag(row["pospair"].split("\t")[0]) for row in rows[:n]]


def one_at_a_time(loaded, texts: list[str], settings: SamplingSettings) -> tuple[list[str], float]:
    """Answers generated prompt by prompt, and the seconds they took together."""
    started = time.perf_counter()
    answers = [generate(loaded, text, settings).text for text in texts]
    return answers, time.perf_counter() - started


def batched(loaded, texts: list[str], settings: SamplingSettings) -> tuple[list[str], float]:
    """Answers generated in one left-padded batch, and the seconds it took."""
    started = time.perf_counter()
    answers = [r.text for r in generate_batch(loaded, texts, settings)]
    return answers, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_SPEC, help="model folder or spec")
    parser.add_argument("--batch", type=int, default=8, help="prompts, all in one batch")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    loaded = resolve_model(args.model)
    fmt = loaded.prompt_format
    texts = [fmt.render_prompt(p, loaded.tokenizer) for p in childes_prompts(args.batch)]
    settings = SamplingSettings(max_new_tokens=args.max_new_tokens, greedy=True,
                                repetition_penalty=1.0)
    generate(loaded, texts[0], SamplingSettings(max_new_tokens=2, greedy=True))  # warm-up

    single, single_s = one_at_a_time(loaded, texts, settings)
    batch, batch_s = batched(loaded, texts, settings)
    mismatches = [i for i, (a, b) in enumerate(zip(single, batch, strict=True)) if a != b]
    result = {"model": loaded.spec, "batch": len(texts), "max_new_tokens": args.max_new_tokens,
              "one_at_a_time_s": round(single_s, 3), "batched_s": round(batch_s, 3),
              "ratio": round(single_s / batch_s, 2), "target_ratio": TARGET_RATIO,
              "outputs_equal": not mismatches, "mismatched_rows": mismatches}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"model {result['model']}: {len(texts)} prompts, {args.max_new_tokens} new tokens, "
              "greedy")
        print(f"  one at a time  {single_s:8.2f} s")
        print(f"  batched        {batch_s:8.2f} s   (batch {len(texts)}, left padding)")
        verdict = "meets" if result["ratio"] >= TARGET_RATIO else "BELOW"
        print(f"  ratio          {result['ratio']:8.2f}x  ({verdict} the {TARGET_RATIO:g}x target)")
        if mismatches:
            print(f"  outputs differ on rows {mismatches}:")
            for i in mismatches:
                print(f"    [{i}] one-at-a-time: {single[i]!r}\n    [{i}] batched:       {batch[i]!r}")
        else:
            print("  batched outputs equal the one-at-a-time outputs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
