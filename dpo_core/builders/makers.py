"""The three model-made pair builders: a teacher writes chosen, a weak model writes rejected, or
best-of-N samples are judged; each turns a chunk of prompts into (pairs, dropped)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ..chat.cache import ModelCache
from ..chat.generate import generate_batch
from ..chat.sampling import SamplingSettings
from ..data.datasets import Pair
from ..evaluation.judges import make_judge
from ..formats import strip_tag
from ..workspace import get_workspace
from .config import GenerateConfig
from .prompts import SourceRow, check_pair, expected_tag, to_dataset_format

_caches: dict[str, object] = {}


def chat_model(spec: str):
    """The model for a spec, loaded once per process and workspace (preview reuses it)."""
    ws = get_workspace()
    cache = _caches.setdefault(str(ws.home), ModelCache(ws))
    return cache.get(spec)


def render_prompts(side, rows: Sequence[SourceRow], system: str | None,
                   tag: str | None) -> list[str]:
    """Prompt texts for the model: chat models get the utterance without tags (and the system
    prompt); plain models continue the dataset's text up to the reply tag."""
    fmt = side.prompt_format
    if fmt.kind == "chat":
        return [fmt.render_prompt(strip_tag(r.prompt) if tag else r.prompt, side.tokenizer,
                                  system=system) for r in rows]
    texts = [fmt.render_prompt(r.prompt, side.tokenizer, system=system or None) for r in rows]
    return [t + fmt.separator + tag if tag else t for t in texts]


def generate_texts(side, prompt_texts: Sequence[str], settings: SamplingSettings) -> list[str]:
    """Replies to rendered prompts in one left-padded batch."""
    return [r.text for r in generate_batch(side, prompt_texts, settings)]


@dataclass
class Build:
    """What a builder needs while it runs: config, model side, judge and the dataset's tag."""

    cfg: GenerateConfig
    side: object
    tag: str | None
    judge: object = None


def make_teacher_pairs(build: Build, rows: Sequence[SourceRow], offset: int
                       ) -> tuple[list[Pair], int]:
    """The teacher writes one reply per prompt; original and generated become chosen/rejected."""
    cfg = build.cfg
    texts = render_prompts(build.side, rows, cfg.system_prompt, build.tag)
    replies = generate_texts(build.side, texts, replace(cfg.sampling, seed=cfg.seed))
    pairs = []
    for i, (row, reply) in enumerate(zip(rows, replies, strict=True)):
        written = to_dataset_format(reply, build.tag)
        chosen, rejected = (written, row.reply) if cfg.teacher_writes == "chosen" \
            else (row.reply, written)
        pairs.append(check_pair(Pair(prompt=row.prompt, chosen=chosen, rejected=rejected,
                                     source="teacher", meta=_meta(build, offset + i, row)),
                                build.tag))
    return pairs, 0


def make_weak_pairs(build: Build, rows: Sequence[SourceRow], offset: int
                    ) -> tuple[list[Pair], int]:
    """A weak model writes the rejected reply; the known reply stays chosen."""
    cfg = build.cfg
    texts = render_prompts(build.side, rows, None, build.tag)
    replies = generate_texts(build.side, texts, replace(cfg.sampling, seed=cfg.seed))
    pairs = [check_pair(Pair(prompt=row.prompt, chosen=row.reply,
                             rejected=to_dataset_format(reply, build.tag), source="weak-model",
                             meta=_meta(build, offset + i, row)), build.tag)
             for i, (row, reply) in enumerate(zip(rows, replies, strict=True))]
    return pairs, 0


def make_best_of_n_pairs(build: Build, rows: Sequence[SourceRow], offset: int
                         ) -> tuple[list[Pair], int]:
    """N samples per prompt (seed + k for candidate k), judged; best vs worst if the margin holds."""
    cfg = build.cfg
    texts = render_prompts(build.side, rows, None, build.tag)
    candidates = [generate_texts(build.side, texts, replace(cfg.sampling, seed=cfg.seed + k))
                  for k in range(cfg.n)]
    pairs, dropped = [], 0
    for i, row in enumerate(rows):
        cands = [to_dataset_format(c[i], build.tag) for c in candidates]
        scores = score_candidates(build.judge, row.prompt, cands)
        best = max(range(len(cands)), key=lambda j: scores[j])
        worst = min(range(len(cands)), key=lambda j: scores[j])
        margin = scores[best] - scores[worst]
        if margin < cfg.min_margin or cands[best] == cands[worst]:
            dropped += 1
            continue
        meta = {**_meta(build, offset + i, row), "margin": round(margin, 6),
                "chosen_score": scores[best], "rejected_score": scores[worst],
                "scores": [round(s, 6) for s in scores], "judge": cfg.judge}
        pairs.append(check_pair(Pair(prompt=row.prompt, chosen=cands[best],
                                     rejected=cands[worst], source="best-of-n", meta=meta),
                                build.tag))
    return pairs, dropped


def score_candidates(judge, prompt: str, candidates: Sequence[str]) -> list[float]:
    """One score per candidate: the judge's own score, or (pairwise judges) the mean preference
    over the other candidates, asked in both orders."""
    prompt = strip_tag(prompt)
    if hasattr(judge, "score"):
        return [float(judge.score(prompt, strip_tag(c))) for c in candidates]
    scores = []
    for i, a in enumerate(candidates):
        prefs = [(judge.preference(prompt, a, b) - judge.preference(prompt, b, a)) / 2
                 for j, b in enumerate(candidates) if j != i]
        scores.append(sum(prefs) / len(prefs))
    return scores


def _meta(build: Build, index: int, row: SourceRow) -> dict:
    return {"builder": build.cfg.builder, "model": build.cfg.model, "index": index,
            "origin": row.origin}


MAKERS: dict[str, Callable] = {"teacher": make_teacher_pairs, "weak": make_weak_pairs,
                               "best-of-n": make_best_of_n_pairs}


def prepare_build(cfg: GenerateConfig, rows: Sequence[SourceRow]) -> Build:
    """Load the model (and judge) the builder needs."""
    judge = None
    if cfg.builder == "best-of-n":
        judge = make_judge(cfg.judge, cfg.judge_model or None, cfg.judge_template or None)
    return Build(cfg, chat_model(cfg.model), expected_tag(cfg, rows), judge)
