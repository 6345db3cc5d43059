"""The demo's models: baseline and fine-tuned, loaded once at start, answering with streaming.

Copied into exported Space folders, so it imports only torch, transformers, peft and this package
(no other `dpo_core` module). Prompt rendering, the stop rule and the sampling settings follow
`dpo_core.formats.PromptFormat` and `dpo_core.chat` (same dict shapes; a parity test checks both
render and cut the same text). A LoRA run shares one copy of the base weights: the
baseline side runs with the adapter disabled, under a lock so two requests never race on it.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import DemoConfig
from .kernels import use_small_rows_kernel

# PEFT asks transformers a deprecated question on every adapter load: noise in the Space's logs
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                        category=FutureWarning)

History = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Format:
    """A prompt format (the dict `dpo_core.formats.PromptFormat.to_dict()` writes)."""

    kind: str = "plain"
    template: str = "{prompt}"
    separator: str = " "
    user_tag: str = ""
    reply_tag: str = ""
    system: str = ""

    @classmethod
    def from_dict(cls, data: dict | None) -> Format:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def _user(self, text: str) -> str:
        text = text.strip()
        if self.kind == "plain" and self.user_tag and not text.startswith(self.user_tag):
            return f"{self.user_tag} {text}"
        return text

    def reply_turn(self, text: str) -> str:
        text = text.strip()
        if self.kind == "plain" and self.reply_tag and not text.startswith(self.reply_tag):
            return f"{self.reply_tag} {text}"
        return text

    def render(self, history: History, message: str, tokenizer) -> str:
        """The model text for the next reply after `history` turns and `message`."""
        if self.kind == "chat":
            msgs = [{"role": "system", "content": self.system}] if self.system else []
            for user, reply in history:
                msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            msgs.append({"role": "user", "content": message})
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        parts = [self._user(u) + self.separator + self.reply_turn(r) for u, r in history]
        prompt = self.template.replace("{prompt}", self._user(message))
        parts.append(f"{self.system}\n{prompt}" if self.system else prompt)
        text = self.separator.join(parts)
        return text + self.separator + self.reply_tag if self.reply_tag else text

    def as_pair_prompt(self, history: History, message: str) -> str:
        """A chat exchange as the lab stores a pair's prompt (chat with history: JSON messages)."""
        if self.kind == "chat":
            if not history:
                return message
            msgs = []
            for user, reply in history:
                msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            msgs.append({"role": "user", "content": message})
            return json.dumps(msgs, ensure_ascii=False)
        parts = [self._user(u) + self.separator + self.reply_turn(r) for u, r in history]
        parts.append(self._user(message))
        return self.separator.join(parts)

    def stop(self) -> re.Pattern | None:
        """Where a plain-format answer ends: a newline or the next speaker tag."""
        if self.kind != "plain":
            return None
        tags = [re.escape(t) for t in (self.user_tag, self.reply_tag) if t]
        return re.compile("|".join(["\n", r"\*[A-Z]{2,4}:", *tags]))


def cut(text: str, stop: re.Pattern | None) -> str:
    """The answer as shown: up to the stop pattern, without surrounding spaces."""
    text = text.lstrip()
    if stop is not None and (m := stop.search(text)):
        text = text[:m.start()]
    return text.strip()


@dataclass
class Settings:
    """Sampling settings of one request, already clamped by the app."""

    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    repetition_penalty: float = 1.1


class Engine:
    """Baseline and fine-tuned model, loaded once from the config."""

    def __init__(self, config: DemoConfig, device: str | None = None):
        import torch

        self.config = config
        self.format = Format.from_dict(config.prompt_format)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        if config.torch_threads > 0:
            torch.set_num_threads(config.torch_threads)
        self.lock = threading.Lock()  # one generation at a time on shared weights
        base = config.locate(config.base)
        self.base_model = self._load(base)
        if config.kind == "lora":
            from peft import PeftModel

            adapter = config.locate(config.adapter)
            self.tuned_model = PeftModel.from_pretrained(self.base_model, adapter).eval()
            self.tokenizer = _tokenizer(adapter, fallback=base)
        else:
            self.tuned_model = self._load(config.locate(config.tuned))
            self.tokenizer = _tokenizer(config.locate(config.tuned), fallback=base)
        for model in {id(m): m for m in (self.base_model, self.tuned_model)}.values():
            use_small_rows_kernel(model)  # faster decode steps on CPU (see kernels.py)

    def _load(self, ref: str):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(ref, dtype=self.dtype, use_safetensors=True)
        return model.to(self.device).eval()

    @contextmanager
    def _side(self, tuned: bool):
        """The model to call for one side; the LoRA baseline runs with the adapter off."""
        if tuned:
            yield self.tuned_model
        elif self.config.kind == "lora":
            with self.tuned_model.disable_adapter():
                yield self.tuned_model
        else:
            yield self.base_model

    def stream(self, tuned: bool, history: History, message: str, settings: Settings,
               meter: dict | None = None) -> Iterator[str]:
        """The answer so far, growing as tokens arrive; the last value is the final answer.

        `meter["new_tokens"]` counts the tokens generated (the limit applies to these).
        """
        text = self.format.render(history, message, self.tokenizer)
        stop = self.format.stop()
        streamer = _counting_streamer(self.tokenizer, meter if meter is not None else {})
        errors: list[BaseException] = []
        worker = threading.Thread(target=self._generate, daemon=True,
                                  args=(tuned, text, settings, streamer, stop, errors))
        worker.start()
        raw, shown = "", None
        for chunk in streamer:
            raw += chunk
            answer = cut(raw, stop)
            if answer != shown:
                shown = answer
                yield answer
            if stop is not None and stop.search(raw.lstrip()):
                break
        worker.join()
        if errors:
            raise errors[0]
        if shown is None:
            yield ""

    def _generate(self, tuned, text, settings, streamer, stop, errors) -> None:
        import torch

        try:
            enc = self.tokenizer(text, return_tensors="pt",
                                 add_special_tokens=not _starts_with_bos(self.tokenizer, text))
            enc = {k: v.to(self.device) for k, v in enc.items()}
            criteria = _stop_criteria(self.tokenizer, stop, enc["input_ids"].shape[1])
            with self.lock, self._side(tuned) as model, torch.inference_mode():
                model.generate(**enc, do_sample=True, temperature=settings.temperature,
                               top_p=settings.top_p, top_k=settings.top_k,
                               max_new_tokens=settings.max_new_tokens,
                               repetition_penalty=settings.repetition_penalty,
                               stopping_criteria=criteria, streamer=streamer,
                               pad_token_id=self.tokenizer.pad_token_id,
                               eos_token_id=self.tokenizer.eos_token_id)
        except BaseException as exc:  # re-raised in the reading thread
            errors.append(exc)
            streamer.end()


def _counting_streamer(tokenizer, meter: dict):
    """A TextIteratorStreamer that also counts the new tokens into `meter`."""
    from transformers import TextIteratorStreamer

    class Counting(TextIteratorStreamer):
        def put(self, value):
            if not self.next_tokens_are_prompt:
                meter["new_tokens"] = meter.get("new_tokens", 0) + int(value.numel())
            super().put(value)

    meter["new_tokens"] = 0
    return Counting(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120)


def _tokenizer(ref: str, fallback: str):
    from transformers import AutoTokenizer

    source = ref
    if Path(ref).is_dir() and not (Path(ref) / "tokenizer_config.json").is_file():
        source = fallback
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        tok = AutoTokenizer.from_pretrained(fallback)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _starts_with_bos(tokenizer, text: str) -> bool:
    return bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)


def _stop_criteria(tokenizer, stop: re.Pattern | None, prompt_len: int):
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
