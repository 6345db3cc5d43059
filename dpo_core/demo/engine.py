"""The demo's models: baseline and fine-tuned, loaded once at start, both answers streamed
together.

Copied into exported Space folders, so it imports only torch, transformers, peft and this package
(no other `dpo_core` module). Prompt rendering, the stop rule and the sampling settings follow
`dpo_core.formats.PromptFormat` and `dpo_core.chat` (same dict shapes; a parity test checks both
render and cut the same text); visitors' text is tokenized as text (`formats.Format.encode`).

Both answers grow at once, as on the lab's Chat page: a LoRA run and its base share one copy of
the weights and answer as one mixed-adapter batch (row 0 with the adapter off, row 1 with it on);
a full fine-tune answers in its own thread beside the base. One generation at a time holds the
lock (the Space's queue runs one request at a time anyway).
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config import DemoConfig
from .formats import Format, History, cut
from .kernels import use_small_rows_kernel

# PEFT asks transformers a deprecated question on every adapter load: noise in the Space's logs
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                        category=FutureWarning)

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
        """One side's answer so far, growing as tokens arrive; the last value is the answer.

        `meter["new_tokens"]` counts the tokens generated (the limit applies to these).
        """
        side = "right" if tuned else "left"
        meter = meter if meter is not None else {}
        for answers in self._run({side: self.format.encode(history, message, self.tokenizer)},
                                 settings, meter):
            yield answers[side]
        meter["new_tokens"] = meter.get("new_tokens", {}).get(side, 0)

    def stream_pair(self, histories: dict[str, History], message: str, settings: Settings,
                    meter: dict | None = None) -> Iterator[dict[str, str]]:
        """Both answers ({"left": baseline, "right": fine-tuned}) so far, growing together.

        `meter["new_tokens"]` gets each side's count of generated tokens; `meter["prompt"]`
        each side's prompt length and how many control tokens it holds (the template's own).
        """
        meter = meter if meter is not None else {}
        ids = {side: self.format.encode(histories[side], message, self.tokenizer)
               for side in SIDES}
        specials = set(self.tokenizer.all_special_ids) | {
            i for t, i in self.tokenizer.get_added_vocab().items()}
        meter["prompt"] = {side: {"tokens": len(v), "control_tokens": sum(t in specials
                                                                           for t in v)}
                           for side, v in ids.items()}
        yield from self._run(ids, settings, meter)

    def _run(self, ids: dict[str, list[int]], settings: Settings,
             meter: dict) -> Iterator[dict[str, str]]:
        """Generate for each side in `ids` at once; yield the answers whenever one grew."""
        stop = self.format.stop()
        rows = _Rows(list(ids))
        errors: list[BaseException] = []
        worker = threading.Thread(target=self._generate_all, daemon=True,
                                  args=(ids, settings, rows, stop, errors))
        worker.start()
        shown: dict[str, str] | None = None
        while True:
            finished = not worker.is_alive()
            answers = {side: cut(self.tokenizer.decode(rows.ids[side], skip_special_tokens=True),
                                 stop) for side in ids}
            if answers != shown:
                shown = answers
                yield answers
            if finished:
                break
            rows.changed.wait(0.05)
            rows.changed.clear()
        worker.join()
        if errors:
            raise errors[0]
        meter["new_tokens"] = {side: rows.counted(side, stop, self.tokenizer) for side in ids}

    def _generate_all(self, ids, settings, rows, stop, errors) -> None:
        try:
            with self.lock:
                if len(ids) == 2 and self.config.kind == "lora" and self._batched(
                        ids, settings, rows, stop):
                    return
                if len(ids) == 2 and self.config.kind == "full":
                    threads = [threading.Thread(target=self._one, daemon=True,
                                                args=(side, ids, settings, rows, stop, errors))
                               for side in ids]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    return
                for side in ids:  # one side, or a LoRA model that cannot mix adapters
                    self._one(side, ids, settings, rows, stop, errors)
        except BaseException as exc:  # re-raised in the reading thread
            errors.append(exc)
        finally:
            rows.done()

    def _batched(self, ids, settings, rows, stop) -> bool:
        """Both sides as one mixed-adapter batch; False when this PEFT/model cannot do it."""
        order = list(ids)
        try:
            self._call(self.tuned_model, [ids[s] for s in order], settings, rows.streamer(order),
                       stop, adapter_names=[BASE_ADAPTER if s == "left" else "default"
                                            for s in order])
        except (TypeError, ValueError, NotImplementedError):
            rows.reset()
            return False
        return True

    def _one(self, side, ids, settings, rows, stop, errors) -> None:
        try:
            with self._side(side == "right") as model:
                self._call(model, [ids[side]], settings, rows.streamer([side]), stop)
        except BaseException as exc:
            errors.append(exc)

    def _call(self, model, batch: list[list[int]], settings: Settings, streamer, stop,
              adapter_names=None) -> None:
        import torch

        width = max(len(x) for x in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch],
                                 device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch],
                            device=self.device)
        extra = {"adapter_names": adapter_names} if adapter_names else {}
        with torch.inference_mode():
            model.generate(input_ids=input_ids, attention_mask=mask, **extra, do_sample=True,
                           temperature=settings.temperature, top_p=settings.top_p,
                           top_k=settings.top_k, max_new_tokens=settings.max_new_tokens,
                           repetition_penalty=settings.repetition_penalty,
                           stopping_criteria=_stop_criteria(self.tokenizer, stop, width),
                           streamer=streamer, pad_token_id=pad,
                           eos_token_id=self.tokenizer.eos_token_id)


SIDES = ("left", "right")
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


class _Rows:
    """New token ids per side as generate() streams them (any batch); `changed` wakes the
    reader."""

    def __init__(self, sides: list[str]):
        self.ids: dict[str, list[int]] = {side: [] for side in sides}
        self.changed = threading.Event()
        self.finished = False

    def streamer(self, order: list[str]):
        from transformers.generation.streamers import BaseStreamer

        rows = self

        class Collect(BaseStreamer):
            prompt_seen = False

            def put(self, value):
                if not self.prompt_seen:  # the first call carries the prompt
                    self.prompt_seen = True
                    return
                for side, token in zip(order, value.reshape(len(order), -1)[:, -1].tolist(),
                                       strict=True):
                    rows.ids[side].append(int(token))
                rows.changed.set()

            def end(self):
                rows.changed.set()

        return Collect()

    def reset(self) -> None:
        for side in self.ids:
            self.ids[side] = []

    def done(self) -> None:
        self.finished = True
        self.changed.set()

    def counted(self, side: str, stop, tokenizer) -> int:
        """Tokens this side generated before it ended (EOS, its stop rule, or the limit)."""
        ids, eos, pad = self.ids[side], tokenizer.eos_token_id, tokenizer.pad_token_id
        for n in range(len(ids)):
            if ids[n] in (eos, pad):
                return n + 1 if ids[n] == eos else n
            if stop is not None and stop.search(tokenizer.decode(ids[:n + 1],
                                                                 skip_special_tokens=True)
                                                .lstrip()):
                return n + 1
        return len(ids)


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
