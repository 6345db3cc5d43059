"""Judges for win rates and best-of-N: an offline sentiment lexicon, a reward model, or an LLM
asked in both orders (position bias cancels)."""

from __future__ import annotations

import string
from typing import Literal

from ..errors import ConfigError
from ..formats import as_messages, plain_text
from ..models import load_tokenizer, resolve_model, resolve_path
from .scoring import tokenize

JUDGES = ("lexicon", "reward-model", "llm")
Verdict = Literal["a", "b", "tie"]
TEMPLATE_FIELDS = ("prompt", "a", "b")
NEEDS_MODEL = ("Give the judge a model: `eval --win-rate --judge reward:SPEC` (or llm:SPEC) on "
               "the command line, judge_model in a generate recipe, or the Judge model field of "
               "the Evaluate or Generate page.")


def parse_judge(text: str) -> tuple[str, str | None]:
    """`lexicon`, `reward:SPEC` or `llm:SPEC` (the CLI's --judge) as (kind, model spec)."""
    kind, _, spec = (text or "lexicon").strip().partition(":")
    kind = {"reward": "reward-model"}.get(kind, kind)
    if kind not in JUDGES:
        raise ConfigError(f"Unknown judge '{text}'.",
                          "Use --judge lexicon, --judge reward:SPEC or --judge llm:SPEC.")
    if kind == "lexicon" and spec:
        raise ConfigError(f"The lexicon judge takes no model (got '{text}').",
                          "Use --judge lexicon, or reward:SPEC / llm:SPEC for a model judge.")
    if kind != "lexicon" and not spec.strip():
        raise ConfigError(f"The {kind} judge needs a model spec (got '{text}').", NEEDS_MODEL)
    return kind, spec.strip() or None


def check_judge_template(template: str) -> None:
    """A judge prompt may use {prompt}, {a} and {b} (literal braces doubled) and must use {a}
    and {b}; anything else is refused before a job starts."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"The judge prompt cannot be filled in: {exc}.",
                          "Write literal braces as {{ and }}; use {prompt}, {a} and {b}.") from exc
    unknown = sorted(f for f in fields if f not in TEMPLATE_FIELDS)
    if unknown:
        raise ConfigError(f"The judge prompt uses {', '.join('{' + f + '}' for f in unknown)}, "
                          "which the judge cannot fill in.",
                          "Use only {prompt}, {a} and {b} (write literal braces as {{ and }}).")
    if not {"a", "b"} <= fields:
        raise ConfigError("The judge prompt needs {a} and {b} placeholders.",
                          "Write where reply A and reply B go, e.g. 'Reply A: {a}'.")


class LexiconJudge:
    """Offline judge: the reply with the more positive VADER sentiment wins (kind/positive)."""

    name = "lexicon"

    def __init__(self, margin: float = 0.05):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.margin = margin
        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, prompt: str, reply: str) -> float:
        return float(self.analyzer.polarity_scores(reply)["compound"])

    def judge(self, prompt: str, a: str, b: str) -> tuple[Verdict, dict]:
        sa, sb = self.score(prompt, a), self.score(prompt, b)
        verdict = "a" if sa - sb > self.margin else "b" if sb - sa > self.margin else "tie"
        return verdict, {"score_a": sa, "score_b": sb}


class RewardModelJudge:
    """A sequence-classification reward model: the reply with the higher reward wins."""

    name = "reward-model"

    def __init__(self, spec: str, margin: float = 0.0, workspace=None):
        from transformers import AutoModelForSequenceClassification

        path = resolve_path(spec, workspace)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
        self.model.eval()
        self.tokenizer = load_tokenizer(path)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.margin = margin

    def score(self, prompt: str, reply: str) -> float:
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            turns = list(as_messages(prompt) or [{"role": "user", "content": plain_text(prompt)}])
            text = tok.apply_chat_template([*turns, {"role": "assistant", "content": reply}],
                                           tokenize=False)
        else:
            text = f"{plain_text(prompt)}\n{reply}"
        with torch.inference_mode():
            logits = self.model(**tok(text, return_tensors="pt", truncation=True)).logits
        return float(logits[0, 0])

    def judge(self, prompt: str, a: str, b: str) -> tuple[Verdict, dict]:
        sa, sb = self.score(prompt, a), self.score(prompt, b)
        verdict = "a" if sa - sb > self.margin else "b" if sb - sa > self.margin else "tie"
        return verdict, {"score_a": sa, "score_b": sb}


DEFAULT_JUDGE_PROMPT = (
    "Which reply to the message is kinder and more helpful?\n\nMessage: {prompt}\n\n"
    "Reply A: {a}\n\nReply B: {b}\n\nAnswer with one letter, A or B."
)


class LLMJudge:
    """A causal LM asked which reply is better; log-prob of "A" vs "B", asked in both orders."""

    name = "llm"

    def __init__(self, spec: str, template: str = DEFAULT_JUDGE_PROMPT, workspace=None):
        check_judge_template(template)
        self.loaded = resolve_model(spec, workspace)
        self.template = template

    def question(self, prompt: str | list, a: str, b: str) -> str:
        """The judge prompt filled in; a conversation shows as `role: content` lines, the way a
        person reads it (never a Python list)."""
        return self.template.format(prompt=plain_text(prompt), a=a, b=b)

    def preference(self, prompt: str | list, a: str, b: str) -> float:
        """log p("A") - log p("B") for the next token after the judge prompt."""
        import torch

        tok, fmt = self.loaded.tokenizer, self.loaded.prompt_format
        text = fmt.render_prompt(self.question(prompt, a, b), tok)
        if fmt.kind == "plain":
            text += fmt.separator
        ids = torch.tensor([tokenize(tok, text)])
        with torch.inference_mode():
            logp = self.loaded.model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
        first = [tok(x, add_special_tokens=False)["input_ids"][0] for x in ("A", "B")]
        return float(logp[first[0]] - logp[first[1]])

    def judge(self, prompt: str, a: str, b: str) -> tuple[Verdict, dict]:
        forward, swapped = self.preference(prompt, a, b), self.preference(prompt, b, a)
        verdict = "a" if forward > 0 and swapped < 0 else \
            "b" if forward < 0 and swapped > 0 else "tie"
        return verdict, {"a_first": forward, "b_first": swapped}


def make_judge(kind: str = "lexicon", spec: str | None = None, template: str | None = None):
    """A judge by name: lexicon (offline default), reward-model SPEC, llm SPEC."""
    if kind == "lexicon":
        return LexiconJudge()
    if not spec:
        raise ConfigError(f"The {kind} judge needs a model spec.", NEEDS_MODEL)
    if kind == "reward-model":
        return RewardModelJudge(spec)
    if kind == "llm":
        return LLMJudge(spec, template or DEFAULT_JUDGE_PROMPT)
    raise ConfigError(f"Unknown judge '{kind}'.", "Use lexicon, reward-model or llm.")
