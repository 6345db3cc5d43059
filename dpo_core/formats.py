"""Prompt formats: how a prompt and a reply become model text. One object for train, eval and chat.

Two kinds:
- `chat`: the tokenizer's chat template (instruction models such as SmolLM2-Instruct), with an
  optional system text;
- `plain`: a text template for models trained on plain text, such as the CHILDES minimal pairs
  (`*MOT: what is that ?` followed by ` *CHI: it is a ball .`). `user_tag`/`reply_tag` let chat
  turn a typed line into the tagged form and make the model continue as the child.

A prompt or reply is text or a conversation: a list of {role, content} messages (TRL's
conversational shape). Conversations go through the chat template turn by turn; a plain format
writes their turns with its speaker tags. A system turn (or the format's `system`) comes first.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from .errors import ConfigError

FormatKind = Literal["chat", "plain"]
ROLES = ("system", "user", "assistant", "tool")


class Messages(list):
    """A conversation: a list of {role, content} dicts. Hashable (by its JSON) so a prompt can
    key a dict the way a text prompt does; treat it as read-only once made."""

    def __hash__(self) -> int:  # lists are unhashable; a prompt is used as a dict key
        return hash(json.dumps(self, ensure_ascii=False, sort_keys=True))


def as_messages(value) -> Messages | None:
    """`value` as a conversation if it is one: a non-empty list of {role, content} dicts with
    text content, or the JSON text of such a list; otherwise None."""
    if isinstance(value, str):
        stripped = value.strip()
        if not (stripped.startswith("[") and stripped.endswith("]") and '"role"' in stripped):
            return None
        try:
            value = json.loads(stripped)
        except ValueError:
            return None
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(m, dict) and isinstance(m.get("role"), str)
           and isinstance(m.get("content"), str) for m in value):
        return value if isinstance(value, Messages) else Messages(value)
    return None


def content_text(value: str | list) -> str:
    """The words of a field: text as it is, a conversation's contents joined by newlines (for
    lengths, checks and search, where roles are not words of the pair)."""
    if isinstance(value, list):
        return "\n".join(m.get("content", "") for m in value if isinstance(m, dict))
    return value


def plain_text(value: str | list) -> str:
    """What a person reads: text as it is, a conversation as `role: content` lines."""
    messages = as_messages(value) if isinstance(value, list) else None
    if messages is None:
        return value if isinstance(value, str) else str(value)
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


@dataclass(frozen=True)
class PromptFormat:
    """How prompts and replies are rendered to text."""

    kind: FormatKind = "plain"
    template: str = "{prompt}"
    separator: str = " "
    user_tag: str = ""
    reply_tag: str = ""
    system: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.kind not in ("chat", "plain"):
            raise ConfigError(f"prompt_format.kind is '{self.kind}'.", "Use 'chat' or 'plain'.",
                              field="prompt_format")
        if self.kind == "plain" and "{prompt}" not in self.template:
            raise ConfigError(f"prompt_format.template '{self.template}' has no {{prompt}}.",
                              "Put {prompt} where the prompt text goes, e.g. '{prompt}'.",
                              field="prompt_format")

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | str | None) -> PromptFormat:
        if not data:
            return cls()
        if isinstance(data, str):
            data = json.loads(data)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def label(self) -> str:
        if self.kind == "chat":
            return "chat template" + (" + system" if self.system else "")
        tags = f" ({self.user_tag} -> {self.reply_tag})" if self.user_tag or self.reply_tag else ""
        return f"plain '{self.template}'{tags}"

    # -- rendering ----------------------------------------------------------------------
    def render_prompt(self, prompt: str | list, tokenizer=None, system: str | None = None) -> str:
        """The text the model sees before the reply. A conversation keeps every turn; its own
        system turn wins over `system` and the format's."""
        messages = as_messages(prompt)
        sys_text = system if system is not None else self.system
        if self.kind == "plain":
            if messages is not None:
                own = [m["content"] for m in messages if m["role"] == "system"]
                sys_text = own[0] if own else sys_text
                prompt = self._plain_turns([m for m in messages if m["role"] != "system"])
            text = self.template.replace("{prompt}", prompt)
            return f"{sys_text}\n{text}" if sys_text else text
        messages = messages if messages is not None else [{"role": "user", "content": prompt}]
        if sys_text and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": sys_text}, *messages]
        return _apply_template(tokenizer, list(messages), add_generation_prompt=True)

    def render_reply(self, reply: str | list, tokenizer=None) -> str:
        """The reply text as it follows the rendered prompt (training and scoring). In a chat
        format a reply of one assistant message renders exactly as its text would; a plain
        format gives it the reply tag, as a typed chat reply gets it."""
        messages = as_messages(reply)
        if messages is not None and len(messages) == 1 and messages[0]["role"] == "assistant":
            if self.kind == "plain":
                return self.separator + self.reply_turn(messages[0]["content"])
            reply, messages = messages[0]["content"], None
        if self.kind == "plain":
            return self.separator + (reply if messages is None else self._plain_turns(messages))
        if messages is None:
            return reply + _end_of_turn(tokenizer)
        return _continuation(tokenizer, messages)

    def _plain_turns(self, messages: list[dict]) -> str:
        """Turns of a conversation as plain text: user turns with the user tag, replies with the
        reply tag (where the format has tags), joined by the separator."""
        return self.separator.join(
            self.reply_turn(m["content"]) if m["role"] == "assistant" else
            self.user_turn(m["content"]) for m in messages)

    def stop_pattern(self) -> re.Pattern | None:
        """Where a generated plain-format answer ends: a newline or the next speaker tag
        (`*MOT:`). Chat formats end at the end-of-turn token instead (None here)."""
        if self.kind != "plain":
            return None
        tags = [re.escape(t) for t in (self.user_tag, self.reply_tag) if t]
        return re.compile("|".join(["\n", r"\*[A-Z]{2,4}:", *tags]))

    def user_turn(self, text: str) -> str:
        """A typed chat line in this format's prompt shape (plain: add the user tag)."""
        text = text.strip()
        if self.kind == "plain" and self.user_tag and not text.startswith(self.user_tag):
            return f"{self.user_tag} {text}"
        return text

    def render_conversation(self, history: list[tuple[str, str]], message: str,
                            tokenizer=None) -> str:
        """Prompt text for a multi-turn chat: earlier (user, reply) turns, then the new message."""
        if self.kind == "chat":
            msgs = []
            if self.system:
                msgs.append({"role": "system", "content": self.system})
            for user, reply in history:
                msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            msgs.append({"role": "user", "content": message})
            return _apply_template(tokenizer, msgs, add_generation_prompt=True)
        parts = []
        for user, reply in history:
            parts.append(self.user_turn(user) + self.separator + self.reply_turn(reply))
        parts.append(self.render_prompt(self.user_turn(message)))
        text = self.separator.join(parts)
        if self.reply_tag:
            text += self.separator + self.reply_tag
        return text

    def reply_turn(self, text: str) -> str:
        text = text.strip()
        if self.kind == "plain" and self.reply_tag and not text.startswith(self.reply_tag):
            return f"{self.reply_tag} {text}"
        return text

    def history_as_prompt(self, history: list[tuple[str, str]], message: str) -> str:
        """A chat exchange as a dataset prompt (the shape pairs are stored in)."""
        if self.kind == "chat":
            msgs = []
            for user, reply in history:
                msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            if not msgs:
                return message
            msgs.append({"role": "user", "content": message})
            return json.dumps(msgs, ensure_ascii=False)
        parts = [self.user_turn(u) + self.separator + self.reply_turn(r) for u, r in history]
        parts.append(self.user_turn(message))
        return self.separator.join(parts)


def cut_reply(text: str, stop: re.Pattern | None) -> str:
    """A generated answer as shown and saved: up to the stop pattern, without outer spaces."""
    text = text.lstrip()
    if stop is not None and (m := stop.search(text)):
        text = text[:m.start()]
    return text.strip()


# Speaker tags of CHILDES-style text (`*MOT: what is that ?`, `*CHI: a ball .`)
SPEAKER_TAG = re.compile(r"\s*(\*[A-Z][A-Z0-9]{1,5}:)\s*")


def leading_tag(text: str | list) -> str | None:
    """The speaker tag a text starts with (`*CHI:`), or None (a conversation has roles, not
    tags)."""
    if not isinstance(text, str):
        return None
    match = SPEAKER_TAG.match(text or "")
    return match.group(1) if match else None


def strip_tag(text: str | list) -> str | list:
    """The utterance without its speaker tag, for instruction models (`*MOT: hi` -> `hi`); a
    conversation is returned as it is."""
    if not isinstance(text, str):
        return text
    match = SPEAKER_TAG.match(text)
    return text[match.end():] if match else text


CHILDES_FORMAT = PromptFormat(kind="plain", template="{prompt}", separator=" ",
                              user_tag="*MOT:", reply_tag="*CHI:")
CHAT_FORMAT = PromptFormat(kind="chat")


def _apply_template(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ConfigError("The chat prompt format needs a tokenizer with a chat template.",
                          "Use a plain prompt format for this model (prompt_format.kind: plain).")
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def _continuation(tokenizer, reply: list[dict]) -> str:
    """Several reply messages as they continue a prompt: the template run on a probe prompt
    with and without them, the difference kept (TRL's way of rendering a conversational reply)."""
    probe = [{"role": "user", "content": "x"}]
    head = _apply_template(tokenizer, probe, add_generation_prompt=True)
    full = _apply_template(tokenizer, probe + list(reply), add_generation_prompt=False)
    if not full.startswith(head):
        raise ConfigError("The chat template renders a reply differently after its prompt, so "
                          "the reply cannot be cut from it.",
                          "Use replies of one assistant message, or a plain prompt format.",
                          field="prompt_format")
    return full[len(head):].rstrip("\n")


def _end_of_turn(tokenizer) -> str:
    """The text that closes an assistant turn in the chat template (e.g. <|im_end|>)."""
    if tokenizer is None:
        return ""
    probe = _apply_template(tokenizer, [{"role": "user", "content": "x"},
                                        {"role": "assistant", "content": "REPLY"}], False)
    tail = probe.split("REPLY", 1)[1] if "REPLY" in probe else ""
    return tail.rstrip("\n") if tail.strip() else (tokenizer.eos_token or "")
