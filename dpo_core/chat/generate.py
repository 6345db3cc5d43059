"""Generating answers: one, a batch, or a stream, each with its timings.

Sampling draws from a per-call `torch.Generator` (one per batch row) instead of the global RNG,
so the same seed gives the same answer even while other threads generate. A plain-format answer
ends at the format's stop rule (`PromptFormat.stop_pattern`). Importing this module sets how
libgomp's threads wait (`threads.py`), so generating in the caller's thread is as fast as in a
background thread.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from ..formats import PromptFormat, cut_reply
from ..models import LoadedModel
from .cache import ChatModel, activated, as_chat_model
from .sampling import SamplingSettings
from .threads import off_caller


@dataclass
class Reply:
    """One generated answer with its timings."""

    text: str
    spec: str = ""
    new_tokens: int = 0
    seconds: float = 0.0
    ttft_s: float | None = None  # time to first token
    tokens_per_s: float = 0.0
    prompt_text: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Sampling and stopping hooks
# ---------------------------------------------------------------------------------------
def _processors(settings: SamplingSettings, rows: int, device):
    """Warpers plus a sampler drawing each row from its own seeded generator (thread-safe)."""
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    if settings.greedy:
        return LogitsProcessorList()

    class SeededSampler(LogitsProcessor):
        def __init__(self):
            self.generators = [torch.Generator(device=device).manual_seed(settings.seed)
                               for _ in range(rows)]

        def __call__(self, input_ids, scores):
            probs = torch.softmax(scores.float(), dim=-1)
            picks = [torch.multinomial(probs[i], 1, generator=g)
                     for i, g in enumerate(self.generators)]
            out = torch.full_like(scores, float("-inf"))
            out.scatter_(1, torch.stack(picks), 0.0)
            return out

    warpers = [TemperatureLogitsWarper(settings.temperature)]
    if settings.top_k:
        warpers.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1:
        warpers.append(TopPLogitsWarper(settings.top_p))
    return LogitsProcessorList([*warpers, SeededSampler()])


def _stopping(tokenizer, stop: re.Pattern | None, prompt_len: int):
    from transformers import StoppingCriteria, StoppingCriteriaList

    if stop is None:
        return StoppingCriteriaList()

    class StopAtPattern(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            return torch.tensor([bool(stop.search(t.lstrip())) for t in texts],
                                device=input_ids.device)

    return StoppingCriteriaList([StopAtPattern()])


def _clock():
    """A streamer that only notes when the first new token arrived."""
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self):
            self.calls, self.first, self.stamps = 0, None, []

        def put(self, value):
            self.calls += 1
            if self.calls > 1:  # call 1 is the prompt
                self.stamps.append(time.perf_counter())
                self.first = self.first or self.stamps[0]

        def end(self):
            pass

    return Clock()


# ---------------------------------------------------------------------------------------
# Generating
# ---------------------------------------------------------------------------------------
def _encode(tokenizer, texts: Sequence[str], device):
    starts_with_bos = bool(tokenizer.bos_token) and all(t.startswith(tokenizer.bos_token)
                                                        for t in texts)
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=not starts_with_bos)
    return {k: v.to(device) for k, v in enc.items()}


def generate_tokens(side: ChatModel, texts: Sequence[str], settings: SamplingSettings,
                  streamer=None, stop: re.Pattern | None = None, adapter_names=None):
    """Token ids of the new text for each row, plus the first-token time. Holds the model lock."""
    import torch

    tok = side.tokenizer
    device = next(side.model.parameters()).device
    enc = _encode(tok, texts, device)
    prompt_len = enc["input_ids"].shape[1]
    clock = streamer if streamer is not None else _clock()
    extra = {"adapter_names": adapter_names} if adapter_names else {}
    with side.lock, activated(side) as model, torch.inference_mode():
        out = model.generate(
            **enc, **extra, do_sample=False, max_new_tokens=settings.max_new_tokens,
            repetition_penalty=settings.repetition_penalty,
            no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
            logits_processor=_processors(settings, len(texts), device),
            stopping_criteria=_stopping(tok, stop, prompt_len), streamer=clock,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            temperature=None, top_p=None, top_k=None)
    return out[:, prompt_len:], clock.first, getattr(clock, "stamps", [])


def replies_of(side: ChatModel, texts, new_ids, started: float, first: float | None,
             stop: re.Pattern | None, stamps: Sequence[float] = ()) -> list[Reply]:
    """Decoded answers; in a batch each row's time ends at its own last token."""
    end = time.perf_counter()
    pad = side.tokenizer.pad_token_id
    replies = []
    for prompt, ids in zip(texts, new_ids, strict=True):
        n = int((ids != pad).sum()) if pad is not None else len(ids)
        seconds = (stamps[min(n, len(stamps)) - 1] if n and stamps else end) - started
        text = cut_reply(side.tokenizer.decode(ids, skip_special_tokens=True), stop)
        replies.append(Reply(text, side.spec, n, seconds,
                             None if first is None else first - started,
                             n / seconds if seconds > 0 else 0.0, prompt))
    return replies


def generate(loaded: LoadedModel | ChatModel, prompt_text: str, settings: SamplingSettings,
             fmt: PromptFormat | None = None) -> Reply:
    """One answer to an already rendered prompt, with timings."""
    return generate_batch(loaded, [prompt_text], settings, fmt)[0]


def generate_batch(loaded: LoadedModel | ChatModel, prompt_texts: Sequence[str],
                   settings: SamplingSettings, fmt: PromptFormat | None = None) -> list[Reply]:
    """Answers to several rendered prompts in one left-padded batch (row i seeded as if alone)."""
    side = as_chat_model(loaded)
    if not prompt_texts:
        return []
    stop = (fmt or side.prompt_format).stop_pattern()
    started = time.perf_counter()
    new_ids, first, stamps = off_caller(generate_tokens, side, prompt_texts, settings, stop=stop)
    return replies_of(side, prompt_texts, new_ids, started, first, stop, stamps)


class Stream:
    """Iterate for text chunks as they are generated; `.reply` holds the answer and timings."""

    def __init__(self, loaded, prompt_text: str, settings: SamplingSettings,
                 fmt: PromptFormat | None = None):
        from transformers import TextIteratorStreamer

        self.side = as_chat_model(loaded)
        self.prompt_text = prompt_text
        self.stop = (fmt or self.side.prompt_format).stop_pattern()
        self.reply: Reply | None = None
        self.error: BaseException | None = None
        self._streamer = _timed(TextIteratorStreamer)(self.side.tokenizer, skip_prompt=True,
                                                      skip_special_tokens=True)
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._work, args=(settings,), daemon=True)
        self._thread.start()

    def _work(self, settings: SamplingSettings) -> None:
        try:
            ids, first, _ = generate_tokens(self.side, [self.prompt_text], settings,
                                       streamer=self._streamer, stop=self.stop)
            self.reply = replies_of(self.side, [self.prompt_text], ids, self._started, first,
                                  self.stop)[0]
        except BaseException as exc:  # surfaced to the reader in __iter__
            self.error = exc
            self._streamer.end()

    def __iter__(self) -> Iterator[str]:
        """Chunks end at word boundaries, so a speaker tag is never shown and then taken back."""
        raw, shown = "", ""
        for chunk in self._streamer:
            raw += chunk
            visible = settled(raw, self.stop)
            if visible.startswith(shown) and len(visible) > len(shown):
                yield visible[len(shown):]
                shown = visible
        self._thread.join()
        if self.error is not None:
            raise self.error
        if self.reply.text.startswith(shown) and len(self.reply.text) > len(shown):
            yield self.reply.text[len(shown):]


def settled(raw: str, stop: re.Pattern | None) -> str:
    """The part of a growing answer safe to show: cut at the stop pattern once it appears,
    else up to the last space (a speaker tag being generated is never shown, then taken back)."""
    text = cut_reply(raw, stop)
    if stop is None or not stop.search(raw.lstrip()):
        text = text[:max(text.rfind(" "), 0)] if " " in text else ""
    return text


def _timed(streamer_cls):
    """A subclass of a transformers streamer that notes when the first new token arrived."""

    class Timed(streamer_cls):
        first: float | None = None

        def put(self, value):
            if not self.next_tokens_are_prompt and self.first is None:
                self.first = time.perf_counter()
            super().put(value)

    return Timed


def stream(loaded: LoadedModel | ChatModel, prompt_text: str, settings: SamplingSettings,
           fmt: PromptFormat | None = None) -> Stream:
    """Start generating in a thread; iterate the result for text chunks, then read `.reply`."""
    return Stream(loaded, prompt_text, settings, fmt)
