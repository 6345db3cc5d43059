"""Generation win rate: both models answer the same prompts with the same sampling settings and
seed (chat's generation, stop rule included); a judge decides each pair of answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..chat.generate import generate_batch
from ..chat.sampling import SamplingSettings
from .statistics import bootstrap_ci

# Win-rate replies are sampled as before one sampling class: temperature 0.7, top-p 0.95, no
# top-k or repetition penalty; `win_rate.max_new_tokens` of a job sets their length.
WIN_RATE_SAMPLING = SamplingSettings(max_new_tokens=48, top_k=0, repetition_penalty=1.0)


def generate_replies(loaded, prompts: Sequence[str], settings: SamplingSettings | None = None,
                     seed: int = 0, batch_size: int = 8) -> list[str]:
    """Replies to prompts in the model's prompt format, cut at its stop rule as chat cuts them
    (left-padded batches; every row seeded with `seed`, so a rerun gives the same replies)."""
    settings = replace(settings or WIN_RATE_SAMPLING, seed=seed)
    fmt = loaded.prompt_format
    texts = [fmt.render_prompt(p, loaded.tokenizer) for p in prompts]
    replies: list[str] = []
    for i in range(0, len(texts), batch_size):
        replies += [r.text for r in generate_batch(loaded, texts[i:i + batch_size], settings,
                                                   fmt)]
    return replies


def win_rate(tuned, baseline, prompts: Sequence[str], judge,
             settings: SamplingSettings | None = None, seed: int = 0) -> dict:
    """Both models answer the same prompts (same settings and seed); the judge decides."""
    replies_a = generate_replies(tuned, prompts, settings, seed)
    replies_b = generate_replies(baseline, prompts, settings, seed)
    rows = []
    for prompt, a, b in zip(prompts, replies_a, replies_b, strict=False):
        verdict, detail = judge.judge(prompt, a, b)
        rows.append({"prompt": prompt, "tuned": a, "baseline": b, "verdict": verdict, **detail})
    n = len(rows)
    wins = sum(r["verdict"] == "a" for r in rows)
    ties = sum(r["verdict"] == "tie" for r in rows)
    low, high = bootstrap_ci([1.0 if r["verdict"] == "a" else 0.5 if r["verdict"] == "tie"
                              else 0.0 for r in rows], seed)
    return {"wins": wins, "ties": ties, "losses": n - wins - ties, "n": n,
            "win_rate": (wins + ties / 2) / n if n else 0.0, "ci_low": low, "ci_high": high,
            "judge": judge.name, "settings": replace(settings or WIN_RATE_SAMPLING, seed=seed).to_dict(),
            "seed": seed, "rows": rows}
