"""Generation win rate: both models answer the same prompts with the same sampling settings and
seeds (chat's generation, stop rule included), several samples per prompt; a judge decides each
pair of answers.

A tie counts half a win. The interval resamples prompts (a prompt's samples move together), and
the length-controlled win rate removes the judge's taste for longer answers (the best-known flaw
of judge win rates): it is the win rate a tuned answer as long as the baseline's would get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..chat.generate import generate_batch
from ..chat.sampling import SamplingSettings
from ..errors import ConfigError
from .statistics import cluster_bootstrap, length_controlled

# Win-rate replies are sampled as before one sampling class: temperature 0.7, top-p 0.95, no
# top-k or repetition penalty; `win_rate.max_new_tokens` of a job sets their length.
WIN_RATE_SAMPLING = SamplingSettings(max_new_tokens=48, top_k=0, repetition_penalty=1.0)
SCORE = {"a": 1.0, "tie": 0.5, "b": 0.0}  # the tuned model is A


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
             settings: SamplingSettings | None = None, seed: int = 0, samples: int = 1) -> dict:
    """Both models answer every prompt `samples` times (sample k seeded `seed + k`, the same
    seed for both); the judge decides each pair."""
    if samples < 1:
        raise ConfigError(f"samples is {samples}.", "Ask for at least 1 sample per prompt.")
    rows = []
    for k in range(samples):
        replies_a = generate_replies(tuned, prompts, settings, seed + k)
        replies_b = generate_replies(baseline, prompts, settings, seed + k)
        for prompt, a, b in zip(prompts, replies_a, replies_b, strict=True):
            verdict, detail = judge.judge(prompt, a, b)
            rows.append({"prompt": prompt, "sample": k, "tuned": a, "baseline": b,
                         "verdict": verdict, **detail})
    return {**summarize_verdicts(rows, seed), "judge": judge.name, "samples": samples,
            "prompts": len(prompts), "seed": seed,
            "settings": replace(settings or WIN_RATE_SAMPLING, seed=seed).to_dict(), "rows": rows}


def summarize_verdicts(rows: Sequence[dict], seed: int = 0) -> dict:
    """Wins, ties, losses, the win rate with a prompt-resampling interval, and the
    length-controlled win rate with its own interval."""
    scores = [SCORE[r["verdict"]] for r in rows]
    gaps = [len(r["tuned"]) - len(r["baseline"]) for r in rows]
    clusters: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        clusters.setdefault(r["prompt"], []).append(i)
    groups = list(clusters.values())

    def rate(idx: list[int]) -> float:
        return sum(scores[i] for i in idx) / len(idx) if idx else 0.0

    def lc_rate(idx: list[int]) -> float:
        return length_controlled([scores[i] for i in idx], [gaps[i] for i in idx])["win_rate"]

    n = len(rows)
    wins, ties = scores.count(1.0), scores.count(0.5)
    low, high = cluster_bootstrap(groups, rate, seed)
    lc = length_controlled(scores, gaps)
    lc_low, lc_high = cluster_bootstrap(groups, lc_rate, seed)
    return {"wins": wins, "ties": ties, "losses": n - wins - ties, "n": n,
            "win_rate": rate(list(range(n))), "ci_low": low, "ci_high": high,
            "lc_win_rate": lc["win_rate"], "lc_ci_low": lc_low, "lc_ci_high": lc_high,
            "length_slope": lc["slope"],
            "mean_length_tuned": sum(len(r["tuned"]) for r in rows) / n if n else 0.0,
            "mean_length_baseline": sum(len(r["baseline"]) for r in rows) / n if n else 0.0}
