"""The chat model cache: models loaded once by spec, a LoRA run and its base sharing one copy of
the base weights, and one lock per set of weights (generation and adapter switches hold it)."""

from __future__ import annotations

import gc
import json
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..demo.kernels import use_small_rows_kernel
from ..errors import ModelError
from ..formats import PromptFormat
from ..models import (
    RUN_MODEL_FILE,
    LoadedModel,
    load_tokenizer,
    read_prompt_format,
    resolve_model,
    resolve_path,
)
from ..workspace import Workspace

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


def ready_for_decoding(model, again: bool = False) -> None:
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
    ready_for_decoding(loaded.model)
    adapter = None
    if loaded.is_adapter:
        _register_wrapper(loaded.model)
        adapter = loaded.model.active_adapter
    return ChatModel(loaded.spec, loaded.model, loaded.tokenizer, loaded.prompt_format,
                     peft=loaded.is_adapter, adapter=adapter, base_spec=loaded.base_spec)


@contextmanager
def activated(side: ChatModel) -> Iterator[object]:
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

    def _run_info(self, spec: str) -> dict | None:
        if not spec.startswith("run:") and not Path(spec).expanduser().is_dir():
            return None
        path = Path(resolve_path(spec, self.workspace))
        f = path / RUN_MODEL_FILE
        return {**json.loads(f.read_text()), "path": str(path)} if f.is_file() else None

    def _entry(self, spec: str) -> _Entry:
        if spec not in self._entries:
            loaded = resolve_model(spec, self.workspace, dtype=self.dtype, device=self.device)
            ready_for_decoding(loaded.model)
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
                ready_for_decoding(entry.peft_model, again=True)
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


BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in mixed-adapter batches


def shares_weights(left: ChatModel, right: ChatModel) -> bool:
    """True when both sides are adapters (or the base) on one copy of the weights, so one
    mixed-adapter batch can answer for both."""
    base = _base_of(left.model)
    return base is _base_of(right.model) and base in _WRAPPERS \
        and left.adapter != right.adapter and left.tokenizer is right.tokenizer
