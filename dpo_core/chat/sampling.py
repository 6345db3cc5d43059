"""How answers are sampled: one settings class for chat, pair builders and win-rate replies."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..fields import check, setting


@dataclass
class SamplingSettings:
    """How answers are sampled; both sides of a comparison use the same settings and seed."""

    temperature: float = setting(0.7, "Higher is more random (> 0).")
    top_p: float = setting(0.95, "Keep the smallest set of tokens whose probability adds up to "
                                 "this (0-1].")
    top_k: int = setting(50, "Keep only the k most likely tokens (0 = no limit).")
    max_new_tokens: int = setting(64, "Longest answer, in tokens.")
    repetition_penalty: float = setting(1.1, "Above 1 discourages repeating tokens.")
    no_repeat_ngram_size: int = setting(0, "Never repeat an n-gram of this size (0 = off).")
    greedy: bool = setting(False, "Always take the most likely token (ignores temperature, "
                                  "top-p, top-k).")
    seed: int = setting(0, "Same seed, same settings: same answer.")

    def __post_init__(self):
        for ok, name, fix in (
                (self.temperature > 0, "temperature", "use a value above 0, e.g. 0.7"),
                (0 < self.top_p <= 1, "top_p", "use a value in (0, 1], e.g. 0.95"),
                (self.top_k >= 0, "top_k", "use 0 (no limit) or a positive count"),
                (self.max_new_tokens >= 1, "max_new_tokens", "use at least 1"),
                (self.repetition_penalty > 0, "repetition_penalty",
                 "use a value above 0; 1.0 means no penalty"),
                (self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size",
                 "use 0 (off) or a positive n"),
                (self.seed >= 0, "seed", "use a non-negative integer")):
            check(ok, f"sampling.{name}", getattr(self, name), f"For {name}, {fix}.")

    def to_dict(self) -> dict:
        return asdict(self)
