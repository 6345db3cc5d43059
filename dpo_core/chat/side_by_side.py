"""Two models side by side: both answers to one message, generated at once; the prompt format
they share, and a warning when it is not the run's own."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..formats import PromptFormat
from .cache import BASE_ADAPTER, ChatModel, ModelCache, shares_weights
from .generate import Reply, generate, generate_tokens, replies_of, settled
from .sampling import SamplingSettings
from .threads import off_caller

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

    `background=False` returns when both answers are done: the way to go when nobody watches
    them grow (`compare`). It still generates off the caller's thread, as fast as the
    background path at any load (`threads.py`).
    """

    def __init__(self, left: ChatModel, right: ChatModel, texts: Sequence[str],
                 settings: SamplingSettings, fmt: PromptFormat, background: bool = True):
        self.sides, self.texts, self.settings = (left, right), list(texts), settings
        self.stop = fmt.stop_pattern()
        self.replies: list[Reply | None] = [None, None]
        self.error: BaseException | None = None
        self.batched = shares_weights(left, right)
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
            off_caller(target)

    # -- workers ---------------------------------------------------------------------------
    def _work_batched(self) -> None:
        left, right = self.sides
        names = [s.adapter or BASE_ADAPTER for s in (left, right)]
        streamer = _RowsStreamer(2)
        self._sources = [(streamer, 0), (streamer, 1)]
        # adapters must be on for adapter_names to pick one per row (off would silence them all)
        runner = replace(left, adapter=next(n for n in names if n != BASE_ADAPTER))
        try:
            new_ids, first, _ = generate_tokens(runner, self.texts, self.settings, streamer,
                                              self.stop, adapter_names=names)
        except (TypeError, ValueError, NotImplementedError):
            self.batched = False  # this model or PEFT version cannot mix adapters in a batch
            self._work_apart()
            return
        except BaseException as exc:  # surfaced by wait()
            self.error = exc
            return
        # each row's time ends at its own last token (stamps are per step)
        replies = replies_of(left, self.texts, new_ids, self._started, first, self.stop,
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
            new_ids, first, stamps = generate_tokens(side, [self.texts[row]], self.settings,
                                                   streamer, self.stop)
            self.replies[row] = replies_of(side, [self.texts[row]], new_ids,
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
            text = settled(raw, self.stop)
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
