"""Chat generation: sampling settings, one answer, a stream, a batch, and two models side by side.

Sampling draws from a per-call `torch.Generator` (one per batch row) instead of the global RNG,
so the same seed gives the same answer even while other threads generate. A LoRA run and its
base share one copy of the base weights in `ModelCache`; the base side runs with the adapter
disabled, under a per-model lock so two requests never race on the adapter state.
"""

from __future__ import annotations

import gc
import json
import os
import re
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from .errors import ConfigError, ModelError, NotFoundError
from .formats import PromptFormat
from .kernels import use_small_rows_kernel
from .models import (
    RUN_MODEL_FILE,
    LoadedModel,
    load_tokenizer,
    read_prompt_format,
    resolve_model,
    resolve_path,
)
from .store import Store, dumps, now
from .workspace import Workspace

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in mixed-adapter batches
Verdict = Literal["left", "right", "tie", "both_bad"]
VERDICTS = ("left", "right", "tie", "both_bad")


# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------
@dataclass
class SamplingSettings:
    """How answers are sampled; both sides of a chat use the same settings and seed."""

    temperature: float = field(default=0.7, metadata={"help": "Higher is more random (> 0)."})
    top_p: float = field(default=0.95, metadata={"help": "Keep the smallest set of tokens whose "
                                                 "probability adds up to this (0-1]."})
    top_k: int = field(default=50, metadata={"help": "Keep only the k most likely tokens "
                                             "(0 = no limit)."})
    max_new_tokens: int = field(default=64, metadata={"help": "Longest answer, in tokens."})
    repetition_penalty: float = field(default=1.1, metadata={"help": "Above 1 discourages "
                                                             "repeating tokens."})
    no_repeat_ngram_size: int = field(default=0, metadata={"help": "Never repeat an n-gram of "
                                                           "this size (0 = off)."})
    greedy: bool = field(default=False, metadata={"help": "Always take the most likely token "
                                                  "(ignores temperature, top-p, top-k)."})
    seed: int = field(default=0, metadata={"help": "Same seed, same settings: same answer."})

    def __post_init__(self):
        _check(self.temperature > 0, "temperature", self.temperature, "use a value above 0, e.g. 0.7")
        _check(0 < self.top_p <= 1, "top_p", self.top_p, "use a value in (0, 1], e.g. 0.95")
        _check(self.top_k >= 0, "top_k", self.top_k, "use 0 (no limit) or a positive count")
        _check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, "use at least 1")
        _check(self.repetition_penalty > 0, "repetition_penalty", self.repetition_penalty,
               "use a value above 0; 1.0 means no penalty")
        _check(self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size", self.no_repeat_ngram_size,
               "use 0 (off) or a positive n")
        _check(self.seed >= 0, "seed", self.seed, "use a non-negative integer")

    def clamp(self, limits: Mapping[str, tuple[float, float]] | None = None) -> SamplingSettings:
        """A copy with each field pulled into `limits` (field -> (low, high)), for public demos."""
        limits = PUBLIC_LIMITS if limits is None else limits
        values = {}
        for f in fields(self):
            if f.name in limits:
                low, high = limits[f.name]
                value = min(max(getattr(self, f.name), low), high)
                values[f.name] = type(getattr(self, f.name))(value)
        return replace(self, **values)

    def to_dict(self) -> dict:
        return asdict(self)


PUBLIC_LIMITS: dict[str, tuple[float, float]] = {
    "temperature": (0.05, 2.0), "top_p": (0.05, 1.0), "top_k": (0, 200),
    "max_new_tokens": (1, 256), "repetition_penalty": (0.5, 2.0), "no_repeat_ngram_size": (0, 8),
}


def _check(ok: bool, name: str, value, fix: str) -> None:
    if not ok:
        raise ConfigError(f"sampling.{name} is {value!r}.", f"For {name}, {fix}.")


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
# What a generation call works on: a model, with or without its adapter, and a lock
# ---------------------------------------------------------------------------------------
_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_WRAPPERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # base module -> PeftModel
_LOCKS_GUARD = threading.Lock()


def _base_of(model):
    """The transformers module under a PeftModel (the weights a base and its adapters share)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_lock(model) -> threading.Lock:
    """One lock per set of weights: every generation on them (and adapter switch) holds it."""
    with _LOCKS_GUARD:
        key = _base_of(model)
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.Lock()
        return lock


_DECODE_READY: weakref.WeakSet = weakref.WeakSet()  # models whose decode kernel is chosen


def _ready_for_decoding(model, again: bool = False) -> None:
    """Choose the decode-step matrix product once per model (`kernels`); `again` after new
    layers (an adapter) were attached."""
    if again or model not in _DECODE_READY:
        use_small_rows_kernel(model)
        _DECODE_READY.add(model)


def _register_wrapper(peft_model) -> None:
    """Remember that these base weights carry adapters, so base-side calls turn them off."""
    _WRAPPERS[_base_of(peft_model)] = peft_model


@dataclass
class ChatModel:
    """One side of a chat. On a shared PEFT model, `adapter=None` means the base (adapter off)."""

    spec: str
    model: object
    tokenizer: object
    prompt_format: PromptFormat
    peft: bool = False
    adapter: str | None = None
    base_spec: str | None = None

    @property
    def lock(self) -> threading.Lock:
        return model_lock(self.model)


def as_chat_model(loaded: LoadedModel | ChatModel) -> ChatModel:
    """A LoadedModel from resolve_model (adapter on when it is one), or a ChatModel as is."""
    if isinstance(loaded, ChatModel):
        return loaded
    _ready_for_decoding(loaded.model)
    adapter = None
    if loaded.is_adapter:
        _register_wrapper(loaded.model)
        adapter = loaded.model.active_adapter
    return ChatModel(loaded.spec, loaded.model, loaded.tokenizer, loaded.prompt_format,
                     peft=loaded.is_adapter, adapter=adapter, base_spec=loaded.base_spec)


@contextmanager
def _activated(side: ChatModel) -> Iterator[object]:
    """This side's adapter state in place (the caller holds the lock); yields what to call.

    Weights that carry adapters always run through their PeftModel: adapters off for a base
    side, even one handed out before an adapter was attached.
    """
    wrapper = _WRAPPERS.get(_base_of(side.model))
    if wrapper is None:
        yield side.model
    elif side.adapter is None:
        with wrapper.disable_adapter():
            yield wrapper
    else:
        wrapper.set_adapter(side.adapter)
        yield wrapper


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


def stop_pattern(fmt: PromptFormat) -> re.Pattern | None:
    """Where a plain-format answer ends: a newline or the next speaker tag (`*MOT:`)."""
    if fmt.kind != "plain":
        return None
    tags = [re.escape(t) for t in (fmt.user_tag, fmt.reply_tag) if t]
    return re.compile("|".join(["\n", r"\*[A-Z]{2,4}:", *tags]))


def _cut(text: str, stop: re.Pattern | None) -> str:
    """The answer as shown: up to the stop pattern, without surrounding spaces."""
    if stop is not None:
        m = stop.search(text.lstrip())
        if m:
            text = text.lstrip()[:m.start()]
    return text.strip()


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


def _run_generate(side: ChatModel, texts: Sequence[str], settings: SamplingSettings,
                  streamer=None, stop: re.Pattern | None = None, adapter_names=None):
    """Token ids of the new text for each row, plus the first-token time. Holds the model lock."""
    import torch

    tok = side.tokenizer
    device = next(side.model.parameters()).device
    enc = _encode(tok, texts, device)
    prompt_len = enc["input_ids"].shape[1]
    clock = streamer if streamer is not None else _clock()
    extra = {"adapter_names": adapter_names} if adapter_names else {}
    with side.lock, _activated(side) as model, torch.inference_mode():
        out = model.generate(
            **enc, **extra, do_sample=False, max_new_tokens=settings.max_new_tokens,
            repetition_penalty=settings.repetition_penalty,
            no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
            logits_processor=_processors(settings, len(texts), device),
            stopping_criteria=_stopping(tok, stop, prompt_len), streamer=clock,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            temperature=None, top_p=None, top_k=None)
    return out[:, prompt_len:], clock.first, getattr(clock, "stamps", [])


def _replies(side: ChatModel, texts, new_ids, started: float, first: float | None,
             stop: re.Pattern | None, stamps: Sequence[float] = ()) -> list[Reply]:
    """Decoded answers; in a batch each row's time ends at its own last token."""
    end = time.perf_counter()
    pad = side.tokenizer.pad_token_id
    replies = []
    for prompt, ids in zip(texts, new_ids, strict=True):
        n = int((ids != pad).sum()) if pad is not None else len(ids)
        seconds = (stamps[min(n, len(stamps)) - 1] if n and stamps else end) - started
        text = _cut(side.tokenizer.decode(ids, skip_special_tokens=True), stop)
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
    stop = stop_pattern(fmt or side.prompt_format)
    started = time.perf_counter()
    new_ids, first, stamps = _run_generate(side, prompt_texts, settings, stop=stop)
    return _replies(side, prompt_texts, new_ids, started, first, stop, stamps)


class Stream:
    """Iterate for text chunks as they are generated; `.reply` holds the answer and timings."""

    def __init__(self, loaded, prompt_text: str, settings: SamplingSettings,
                 fmt: PromptFormat | None = None):
        from transformers import TextIteratorStreamer

        self.side = as_chat_model(loaded)
        self.prompt_text = prompt_text
        self.stop = stop_pattern(fmt or self.side.prompt_format)
        self.reply: Reply | None = None
        self.error: BaseException | None = None
        self._streamer = _timed(TextIteratorStreamer)(self.side.tokenizer, skip_prompt=True,
                                                      skip_special_tokens=True)
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._work, args=(settings,), daemon=True)
        self._thread.start()

    def _work(self, settings: SamplingSettings) -> None:
        try:
            ids, first, _ = _run_generate(self.side, [self.prompt_text], settings,
                                       streamer=self._streamer, stop=self.stop)
            self.reply = _replies(self.side, [self.prompt_text], ids, self._started, first,
                                  self.stop)[0]
        except BaseException as exc:  # surfaced to the reader in __iter__
            self.error = exc
            self._streamer.end()

    def __iter__(self) -> Iterator[str]:
        """Chunks end at word boundaries, so a speaker tag is never shown and then taken back."""
        raw, shown = "", ""
        for chunk in self._streamer:
            raw += chunk
            visible = _settled(raw, self.stop)
            if visible.startswith(shown) and len(visible) > len(shown):
                yield visible[len(shown):]
                shown = visible
        self._thread.join()
        if self.error is not None:
            raise self.error
        if self.reply.text.startswith(shown) and len(self.reply.text) > len(shown):
            yield self.reply.text[len(shown):]


def _settled(raw: str, stop: re.Pattern | None) -> str:
    """The part of a growing answer safe to show: cut at the stop pattern once it appears,
    else up to the last space (a speaker tag being generated is never shown, then taken back)."""
    text = _cut(raw, stop)
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


# ---------------------------------------------------------------------------------------
# The model cache: base + LoRA share one copy of the base weights
# ---------------------------------------------------------------------------------------
@dataclass
class _Entry:
    """Weights loaded once: a base (maybe wrapped by PEFT with adapters) or a full model."""

    loaded: LoadedModel
    peft_model: object | None = None
    adapters: dict[str, ChatModel] = field(default_factory=dict)  # run spec -> side


class ModelCache:
    """Loaded models keyed by spec; a LoRA run and its base share the base weights."""

    def __init__(self, workspace: Workspace | None = None, *, device: str | None = None,
                 dtype=None):
        self.workspace, self.device, self.dtype = workspace, device, dtype
        self._entries: dict[str, _Entry] = {}  # base or full-model spec -> weights
        self._lock = threading.RLock()  # loading and eviction

    def get(self, spec: str) -> ChatModel:
        """The side for a spec, loading what is missing (never the same weights twice)."""
        spec = spec.strip()
        with self._lock:
            info = self._run_info(spec)
            if info and info.get("kind") == "lora":
                return self._adapter_side(spec, info)
            entry = self._entry(spec)
            if entry.peft_model is not None:  # the base of a loaded adapter: adapter off
                base = entry.loaded
                return ChatModel(spec, entry.peft_model, base.tokenizer, base.prompt_format,
                                 peft=True, adapter=None, base_spec=base.base_spec)
            return as_chat_model(entry.loaded)

    def keep_only(self, specs: Sequence[str]) -> None:
        """Evict weights that none of `specs` needs (another model was chosen)."""
        with self._lock:
            needed = set()
            for spec in specs:
                info = self._run_info(spec.strip())
                is_lora = info and info.get("kind") == "lora"
                needed.add(info["base"] if is_lora else spec.strip())
            for key in [k for k in self._entries if k not in needed]:
                del self._entries[key]
            gc.collect()
            _empty_device_cache()

    @property
    def weight_copies(self) -> int:
        """How many sets of model weights are in memory."""
        return len(self._entries)

    def loaded_specs(self) -> list[str]:
        out = []
        for key, entry in self._entries.items():
            out += [key, *entry.adapters]
        return out

    def _run_info(self, spec: str) -> dict | None:
        if not spec.startswith("run:") and not Path(spec).expanduser().is_dir():
            return None
        path = Path(resolve_path(spec, self.workspace))
        f = path / RUN_MODEL_FILE
        return {**json.loads(f.read_text()), "path": str(path)} if f.is_file() else None

    def _entry(self, spec: str) -> _Entry:
        if spec not in self._entries:
            loaded = resolve_model(spec, self.workspace, dtype=self.dtype, device=self.device)
            _ready_for_decoding(loaded.model)
            self._entries[spec] = _Entry(loaded)
        return self._entries[spec]

    def _adapter_side(self, spec: str, info: dict) -> ChatModel:
        entry = self._entry(info["base"])
        if spec in entry.adapters:
            return entry.adapters[spec]
        from peft import PeftModel

        path, name = info["path"], _adapter_name(spec)
        with model_lock(entry.peft_model or entry.loaded.model):
            try:
                if entry.peft_model is None:
                    peft_model = PeftModel.from_pretrained(entry.loaded.model, path,
                                                           adapter_name=name)
                    peft_model.eval()
                    _register_wrapper(peft_model)
                    entry.peft_model = peft_model
                else:
                    entry.peft_model.load_adapter(path, adapter_name=name)
                _ready_for_decoding(entry.peft_model, again=True)
            except (OSError, ValueError) as exc:
                raise ModelError(f"Could not attach the adapter in {path}: {exc}",
                                 "Check that the run's final/ folder is complete.") from exc
        tok = _same_or_own_tokenizer(path, entry.loaded.tokenizer)
        side = ChatModel(spec, entry.peft_model, tok, read_prompt_format(path, tok), peft=True,
                         adapter=name, base_spec=info["base"])
        entry.adapters[spec] = side
        return side


def _same_or_own_tokenizer(path: str, base_tok):
    """The base's tokenizer when the run saved an identical copy (training does), so both sides
    can share one batch; the run's own when it differs (added tokens, another chat template)."""
    if not (Path(path) / "tokenizer_config.json").is_file():
        return base_tok
    tok = load_tokenizer(path)
    same = (tok.get_vocab() == base_tok.get_vocab()
            and tok.all_special_tokens == base_tok.all_special_tokens
            and tok.pad_token_id == base_tok.pad_token_id
            and getattr(tok, "chat_template", None) == getattr(base_tok, "chat_template", None)
            and type(tok) is type(base_tok))
    return base_tok if same else tok


def _adapter_name(spec: str) -> str:
    return "a_" + re.sub(r"\W", "_", spec)


def _empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------
# Conversations and side by side
# ---------------------------------------------------------------------------------------
History = Sequence[tuple[str, str]]


def render_chat(side: ChatModel, history: History, message: str,
                fmt: PromptFormat | None = None) -> str:
    """The prompt text for the next turn (plain formats: `*MOT: ...` then `*CHI:`)."""
    fmt = fmt or side.prompt_format
    return fmt.render_conversation(list(history), message, side.tokenizer)


def format_warning(run_format: PromptFormat | dict | None,
                   chosen_format: PromptFormat | dict | None) -> str | None:
    """A note for the user when chat uses another prompt format than the run was trained with."""
    if run_format is None or chosen_format is None:
        return None
    run_fmt, chosen = (f if isinstance(f, PromptFormat) else PromptFormat.from_dict(f)
                       for f in (run_format, chosen_format))
    if run_fmt == chosen:
        return None
    return (f"The run was trained with the {run_fmt.label} prompt format, but this chat uses "
            f"{chosen.label}; answers may be worse than in training. Pick the run's format to "
            "compare fairly.")


def chat_format(left: ChatModel, right: ChatModel) -> PromptFormat:
    """The format both sides use: the fine-tuned side's (right first), else the right one's."""
    for side in (right, left):
        if side.peft and side.adapter or side.spec.startswith("run:"):
            return side.prompt_format
    return right.prompt_format


@dataclass
class SideBySide:
    left: Reply
    right: Reply
    batched: bool
    seconds: float
    prompt_format: PromptFormat

    def to_dict(self) -> dict:
        return {"left": self.left.to_dict(), "right": self.right.to_dict(),
                "batched": self.batched, "seconds": self.seconds,
                "prompt_format": self.prompt_format.to_dict()}


def side_by_side(cache: ModelCache, left_spec: str, right_spec: str, history_left: History,
                 history_right: History, message: str, settings: SamplingSettings,
                 fmt: PromptFormat | None = None, batch: bool = True) -> SideBySide:
    """Both answers to one message; one mixed-adapter batch when both sides share a base."""
    cache.keep_only([left_spec, right_spec])
    left, right = cache.get(left_spec), cache.get(right_spec)
    fmt = fmt or chat_format(left, right)
    texts = [render_chat(left, history_left, message, fmt),
             render_chat(right, history_right, message, fmt)]
    if not batch:  # one side after the other (the reference the batched path is measured by)
        started = time.perf_counter()
        replies = [generate(left, texts[0], settings, fmt),
                   generate(right, texts[1], settings, fmt)]
        return SideBySide(*replies, False, time.perf_counter() - started, fmt)
    live = PairStream(left, right, texts, settings, fmt, background=False)
    left_reply, right_reply = live.wait()
    return SideBySide(left_reply, right_reply, live.batched, live.seconds, fmt)


_DEBUG_TOKEN_DELAY_S = float(os.environ.get("DPO_LAB_DEBUG_TOKEN_DELAY_S") or 0)


class _RowsStreamer:
    """Collects the new token ids of every row of a generate() call as they come (any batch)."""

    def __init__(self, rows: int):
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.calls, self.first, self.stamps = 0, None, []

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 1:  # the prompt
            return
        self.stamps.append(time.perf_counter())
        self.first = self.first or self.stamps[0]
        if _DEBUG_TOKEN_DELAY_S:  # tests slow tiny models down to watch streaming in a browser
            time.sleep(_DEBUG_TOKEN_DELAY_S)
        for row, token in enumerate(value.reshape(len(self.ids), -1)[:, -1].tolist()):
            self.ids[row].append(int(token))

    def end(self) -> None:
        pass


class PairStream:
    """Both sides' answers generated at once; poll `visible()` while `running`, then `replies`.

    Sides on one set of weights (a LoRA run and its base) run as one mixed-adapter batch, so
    both answers grow token by token together; sides on separate weights run in two threads at
    the same time. Either way each row is seeded as if it were alone, so the answers equal
    one-at-a-time generation.

    `background=False` generates in the caller's thread and returns when done: the way to go
    when nobody watches the answers grow. On CPU a fresh thread is slower when the caller's
    thread has already run parallel torch work (loaded the model, say): libgomp then manages
    more threads than there are cores and stops spinning between the many small products of a
    decode step (2x slower per token measured on 2 cores).
    """

    def __init__(self, left: ChatModel, right: ChatModel, texts: Sequence[str],
                 settings: SamplingSettings, fmt: PromptFormat, background: bool = True):
        self.sides, self.texts, self.settings = (left, right), list(texts), settings
        self.stop = stop_pattern(fmt)
        self.replies: list[Reply | None] = [None, None]
        self.error: BaseException | None = None
        self.batched = _shares_weights(left, right)
        self.seconds = 0.0
        self._shown = ["", ""]
        self._started = time.perf_counter()
        self._sources: list[tuple[_RowsStreamer, int]] = []  # per side: streamer, its row
        target = self._work_batched if self.batched else self._work_apart
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=target, daemon=True)
            self._thread.start()
        else:
            target()

    # -- workers ---------------------------------------------------------------------------
    def _work_batched(self) -> None:
        left, right = self.sides
        names = [s.adapter or BASE_ADAPTER for s in (left, right)]
        streamer = _RowsStreamer(2)
        self._sources = [(streamer, 0), (streamer, 1)]
        # adapters must be on for adapter_names to pick one per row (off would silence them all)
        runner = replace(left, adapter=next(n for n in names if n != BASE_ADAPTER))
        try:
            new_ids, first, _ = _run_generate(runner, self.texts, self.settings, streamer,
                                              self.stop, adapter_names=names)
        except (TypeError, ValueError, NotImplementedError):
            self.batched = False  # this model or PEFT version cannot mix adapters in a batch
            self._work_apart()
            return
        except BaseException as exc:  # surfaced by wait()
            self.error = exc
            return
        # each row's time ends at its own last token (stamps are per step)
        replies = _replies(left, self.texts, new_ids, self._started, first, self.stop,
                           streamer.stamps)
        replies[1].spec = right.spec
        self.replies = replies
        self.seconds = time.perf_counter() - self._started

    def _work_apart(self) -> None:
        self._sources = [(_RowsStreamer(1), 0), (_RowsStreamer(1), 0)]
        if self._thread is None:  # nobody watches: one side after the other, in this thread
            for row in (0, 1):
                self._one(row, time.perf_counter())
            self.seconds = time.perf_counter() - self._started
            return
        threads = [threading.Thread(target=self._one, args=(row,), daemon=True)
                   for row in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.seconds = time.perf_counter() - self._started

    def _one(self, row: int, started: float | None = None) -> None:
        side, (streamer, _) = self.sides[row], self._sources[row]
        try:
            new_ids, first, stamps = _run_generate(side, [self.texts[row]], self.settings,
                                                   streamer, self.stop)
            self.replies[row] = _replies(side, [self.texts[row]], new_ids,
                                         started or self._started, first, self.stop, stamps)[0]
        except BaseException as exc:  # surfaced by wait()
            self.error = exc

    # -- reading ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def visible(self) -> tuple[str, str]:
        """Each side's answer so far, cut at word boundaries (a speaker tag never flickers)."""
        out = []
        for row in (0, 1):
            if self.replies[row] is not None:
                out.append(self.replies[row].text)
                continue
            ids = []
            if self._sources:
                streamer, index = self._sources[row]
                ids = list(streamer.ids[index])
            raw = self.sides[row].tokenizer.decode(ids, skip_special_tokens=True)
            text = _settled(raw, self.stop)
            if text.startswith(self._shown[row]):
                self._shown[row] = text
            out.append(self._shown[row])
        return out[0], out[1]

    def wait(self) -> tuple[Reply, Reply]:
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        return self.replies[0], self.replies[1]


def _shares_weights(left: ChatModel, right: ChatModel) -> bool:
    base = _base_of(left.model)
    return base is _base_of(right.model) and base in _WRAPPERS \
        and left.adapter != right.adapter and left.tokenizer is right.tokenizer


# ---------------------------------------------------------------------------------------
# Votes: a preference becomes a pair in a dataset
# ---------------------------------------------------------------------------------------
@dataclass
class VoteResult:
    vote_id: int
    pair_id: int | None
    dataset: str | None


def record_vote(store: Store, left_spec: str, right_spec: str, prompt: str, left_text: str,
                right_text: str, verdict: Verdict, *, dataset: str | None = None,
                prompt_format: PromptFormat | None = None,
                settings: SamplingSettings | None = None, edited_better: str | None = None,
                history: History = ()) -> VoteResult:
    """Store a vote; left/right also write a `chat` pair (prompt incl. history) into `dataset`.

    `prompt` is the last user message and `history` the earlier (user, reply) turns of the side
    the user preferred; the pair's prompt is both, in the run's format.
    """
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict is '{verdict}'.", f"Use one of: {', '.join(VERDICTS)}.")
    fmt = prompt_format or PromptFormat()
    full_prompt = fmt.history_as_prompt(list(history), prompt)
    meta = {"left": left_spec, "right": right_spec, "prompt_format": fmt.to_dict(),
            "settings": settings.to_dict() if settings else {}}
    pair_id = ds_name = None
    with store.write() as conn:
        if verdict in ("left", "right"):
            if not dataset or not dataset.strip():
                raise ConfigError("A vote with a preference needs a dataset to write the pair to.",
                                  "Pick a dataset, or type a new name.")
            pair_id, ds_name = _write_pair(store, dataset.strip(), fmt, full_prompt, left_text,
                                           right_text, verdict, edited_better, meta)
        cur = conn.execute(
            "INSERT INTO votes(at, left_spec, right_spec, prompt, left_text, right_text, verdict,"
            " pair_id, meta_json) VALUES(?,?,?,?,?,?,?,?,?)",
            (now(), left_spec, right_spec, full_prompt, left_text, right_text, verdict, pair_id,
             dumps({**meta, "edited": edited_better is not None, "dataset": ds_name})))
    return VoteResult(cur.lastrowid, pair_id, ds_name)


def _write_pair(store, dataset, fmt, prompt, left_text, right_text, verdict, edited, meta):
    from .data.datasets import Pair, create_dataset, get_dataset, insert_pairs

    try:
        ds = get_dataset(store, dataset)
    except NotFoundError:
        ds = create_dataset(store, dataset, prompt_format=fmt.to_dict(),
                            recipe={"source": "chat"}, description="Votes from side-by-side chat")
    better, worse = (left_text, right_text) if verdict == "left" else (right_text, left_text)
    if edited is not None and edited.strip():
        better = edited.strip()
    pair = Pair(prompt, fmt.reply_turn(better), fmt.reply_turn(worse), source="chat",
                meta={**meta, "verdict": verdict, "edited": edited is not None})
    insert_pairs(store, ds.id, [pair])
    pair_id = store.scalar("SELECT MAX(id) FROM pairs WHERE dataset_id=?", (ds.id,))
    return pair_id, ds.name
