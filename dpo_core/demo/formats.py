"""The demo's prompt format: a visitor's conversation as model text and token ids, and where a
plain-format answer ends.

A deliberate copy of `dpo_core.formats.PromptFormat` (same dict shape; a parity test holds both
to the same text), plus what only a public demo needs: `encode` tokenizes what visitors typed as
text. A chat template's control tokens (`<|im_start|>system ...`) typed into the prompt reach the
model as the characters they are, never as the template's own tokens, so no visitor can write a
system turn or end the user turn early. Copied into exported Space folders: standard library
only (the tokenizer is passed in).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

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

    def encode(self, history: History, message: str, tokenizer) -> list[int]:
        """Token ids of `render(...)`, with every text a visitor (or a model answer) supplied
        tokenized as plain text: control tokens in it are split into ordinary tokens."""
        texts = [message, *(t for turn in history for t in turn)]
        text = self.render(history, message, tokenizer)
        if not any(token in t for token in control_tokens(tokenizer) for t in texts):
            return _tokenize(tokenizer, text)  # nothing to escape: exactly the usual ids
        if self.kind != "chat":  # a plain format's own text holds no control tokens
            return _lead(tokenizer, text) + _as_text(tokenizer, text)
        return _encode_chat(self, history, message, tokenizer)

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


# ---------------------------------------------------------------------------------------
# Tokenizing visitors' text as text
# ---------------------------------------------------------------------------------------
def control_tokens(tokenizer) -> list[str]:
    """Strings the tokenizer would read as one added or special token (`<|im_start|>`, ...)."""
    found = set(tokenizer.get_added_vocab()) | set(tokenizer.all_special_tokens)
    return sorted(t for t in found if t)


def _tokenize(tokenizer, text: str) -> list[int]:
    starts_with_bos = bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
    return list(tokenizer(text, add_special_tokens=not starts_with_bos)["input_ids"])


def _as_text(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def _lead(tokenizer, text: str) -> list[int]:
    """The special tokens the tokenizer puts before a text (a BOS), unless the text has it."""
    if tokenizer.bos_token and text.startswith(tokenizer.bos_token):
        return []
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    return list(full[:len(full) - len(plain)]) if full[-len(plain):] == plain else []


def _encode_chat(fmt: Format, history: History, message: str, tokenizer) -> list[int]:
    """The chat template rendered around random placeholders; the template's own pieces are
    tokenized as usual, each visitor text in place of its placeholder as plain text."""
    mark = f"TXT{secrets.token_hex(8)}X"
    texts = [t for turn in history for t in turn] + [message]
    holders = [f"{mark}{i}{mark}" for i in range(len(texts))]
    slots = iter(holders)
    placeheld = [(next(slots), next(slots)) for _ in history]
    rendered = fmt.render(placeheld, next(slots), tokenizer)
    pieces = re.split(f"{mark}(\\d+){mark}", rendered)
    if len(pieces) != 2 * len(texts) + 1:  # a template that rewrites message text: neutralize
        escaped = [(_defuse(u, tokenizer), _defuse(r, tokenizer)) for u, r in history]
        return _tokenize(tokenizer, fmt.render(escaped, _defuse(message, tokenizer), tokenizer))
    ids = _lead(tokenizer, rendered)
    for k, piece in enumerate(pieces):
        if k % 2:
            ids += _as_text(tokenizer, texts[int(piece)])
        elif piece:
            ids += list(tokenizer(piece, add_special_tokens=False)["input_ids"])
    return ids


def _defuse(text: str, tokenizer) -> str:
    """Control-token strings broken by a word joiner (U+2060): shown alike, read as text."""
    for token in control_tokens(tokenizer):
        text = text.replace(token, token[:1] + "\u2060" + token[1:])
    return text
