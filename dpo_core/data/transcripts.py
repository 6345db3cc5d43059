"""Transcripts to minimal pairs: preference pairs made from dialogue transcripts (no model).

Transcript minimal pairs (the rule behind the CHILDES pair files, len/tok x overlap/no_overlap):

- Input is CHAT (`.cha`) or plain text. A turn is a line `*SPK: utterance` (tab or space after the
  colon). `@` headers and `%` dependent tiers are ignored; a line starting with a tab continues the
  line before it (joined with one space; a continued `%` tier stays ignored). `@Begin`/`@End` and
  file boundaries separate sessions: a reply never answers a turn of another session.
- Every adult turn (any speaker but the child, default `CHI`) directly followed by a child turn
  gives one pair: prompt = the adult turn with its tag (`*MOT: what is that ?`), chosen = the
  child's real reply (`*CHI: it is a ball .`), rejected = another child reply from anywhere in the
  corpus with the same length as chosen.
- Length is counted in whitespace-separated words, punctuation included (`match="len"`), or in
  subword tokens of `tokenizer` without special tokens (`match="tok"`); the speaker tag is not
  counted.
- `overlap=False`: the rejected reply shares no word with the adult turn (words are lower-cased
  letter/digit/apostrophe runs, so punctuation never counts as shared). `overlap=True` allows it.
- Rejected is never the same text as chosen. Candidates are drawn with `random.Random(seed)`, so
  the same corpus and seed give the same pairs. A pair with no candidate is dropped and counted
  (`PairBuild.dropped`).
- Each pair records `meta = {"match", "overlap", "seed", "length"}` and `source = "transcript"`.

CHAT clean-up (`clean=`, each optional, applied to every utterance before pairing):
`retracing` drops the retraced words with their `[/]` `[//]` `[///]` marker (`<I want> [/] I
want` -> `I want`);
`codes` drops other bracketed annotations (`[+ gram]`, `[% ...]`, `[*]`, `[?]`, `[!]`);
`fillers` drops `&-um` fillers, `&+fr` fragments and `&=laughs` events;
`unintelligible` drops `xxx`, `yyy` and `www`; `form_markers` drops `@c`-style markers from
words (`doggie@c` -> `doggie`); `zero` drops `0 .` utterances (an action without words) and
`0word` omitted-word marks. An utterance left without words is dropped.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..access import require_owner
from ..errors import ConfigError, DataError
from ..store import Store
from .datasets import Dataset, Pair, create_dataset, get_dataset, insert_pairs

MatchKind = Literal["len", "tok"]

_TURN = re.compile(r"^\*([A-Za-z0-9_+\-]+):[ \t]*(.*)$")
_WORD = re.compile(r"[a-z0-9']+")
_BULLET = re.compile(r"\x15[^\x15]*\x15")  # CHAT media time marks, e.g. \x151234_5678\x15
_RANDOM_TRIES = 32  # random draws before the deterministic scan of a length bucket
CLEAN_UPS = {
    "retracing": (re.compile(r"(?:<[^>]*>|\S+)\s*\[/{1,3}\??\]"), ""),
    "codes": (re.compile(r"\[[^\]]*\]"), ""),
    "fillers": (re.compile(r"(?<!\S)&[-+=]\S*"), ""),
    "unintelligible": (re.compile(r"(?<!\S)(?:xxx|yyy|www)(?!\S)"), ""),
    "form_markers": (re.compile(r"(?<=\w)@[a-z]+(?::[a-z]+)*", re.I), ""),
    "zero": (re.compile(r"(?<!\S)0(?=\w)|^\s*0\s*(?=[.!?]\s*$)"), ""),
}
_HAS_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class Turn:
    """One utterance of a transcript."""

    speaker: str
    text: str
    session: int = 0

    @property
    def line(self) -> str:
        """The turn as a tagged line, e.g. `*MOT: what is that ?`."""
        return f"*{self.speaker}: {self.text}"


class PairBuild(list):
    """The pairs a builder made (a list of Pair), with how many candidates it dropped."""

    def __init__(self, pairs: Iterable[Pair] = (), *, dropped: int = 0):
        super().__init__(pairs)
        self.dropped = dropped


def clean_utterance(text: str, clean: Iterable[str] = ()) -> str:
    """An utterance with the chosen CHAT clean-ups applied (see the module docstring); ''
    when no word is left."""
    for name in clean:
        pattern, replacement = CLEAN_UPS[name]
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text if _HAS_WORD.search(text) else ""


def check_clean_ups(clean: Iterable[str]) -> list[str]:
    """The clean-ups asked for, in the order they apply; unknown names are refused."""
    unknown = sorted(set(clean) - set(CLEAN_UPS))
    if unknown:
        raise ConfigError(f"Unknown clean-up(s): {', '.join(unknown)}.",
                          f"Use any of: {', '.join(CLEAN_UPS)}.", field="clean")
    return [c for c in CLEAN_UPS if c in set(clean)]


def parse_transcript(text: str, *, name: str = "transcript", session: int = 0,
                     clean: Iterable[str] = ()) -> list[Turn]:
    """Turns of one CHAT or plain-text transcript; `@Begin`/`@End` start new sessions."""
    clean = check_clean_ups(clean)
    turns: list[Turn] = []
    current: list | None = None  # [speaker, text] of the main line being read; None for a tier
    started = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if line[0] in " \t":
            if current is not None:
                current[1] += " " + line.strip()
            continue
        _flush(turns, current, session, clean)
        current = None
        if line.startswith("@"):
            header = line.split(":", 1)[0].strip().lower()
            if header == "@begin":
                session += int(started)
                started = True
            elif header == "@end":
                session, started = session + 1, False
            continue
        if line.startswith("%"):
            continue
        match = _TURN.match(line)
        if match is None:
            raise DataError(f"{name}, line {number}: '{line[:60]}' is not a turn.",
                            "Write one turn per line as '*SPEAKER: utterance' (CHAT headers "
                            "start with @, tiers with %, continuation lines with a tab).")
        current = [match.group(1), match.group(2)]
    _flush(turns, current, session, clean)
    return turns


def _flush(turns: list[Turn], current: list | None, session: int, clean: list[str]) -> None:
    if current is None:
        return
    text = " ".join(_BULLET.sub(" ", current[1]).split())
    if clean:
        text = clean_utterance(text, clean)
    if text:
        turns.append(Turn(current[0], text, session))


def read_transcripts(paths: Iterable[str | Path], clean: Iterable[str] = ()) -> list[Turn]:
    """Turns of several transcript files; each file's sessions are numbered apart."""
    turns: list[Turn] = []
    session = 0
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"Transcript file {path} does not exist.",
                            "Pass .cha files or text files with one '*SPEAKER: utterance' per line.")
        text = path.read_text(encoding="utf-8", errors="replace")
        file_turns = parse_transcript(text, name=str(path), session=session, clean=clean)
        turns += file_turns
        session = (file_turns[-1].session if file_turns else session) + 1
    return turns


def answered_turns(turns: Sequence[Turn], child: str = "CHI") -> list[tuple[Turn, Turn]]:
    """(adult turn, child reply) for every adult turn the child answers next, same session."""
    return [(a, b) for a, b in zip(turns, turns[1:], strict=False)
            if a.speaker != child and b.speaker == child and a.session == b.session]


def words(text: str) -> set[str]:
    """The lower-cased words of an utterance (punctuation left out), for the overlap rule."""
    return set(_WORD.findall(text.lower()))


def build_transcript_pairs(turns_or_paths, match: MatchKind = "len", overlap: bool = True,
                           tokenizer=None, seed: int = 0, child: str = "CHI") -> PairBuild:
    """Minimal pairs from transcripts: real child reply vs a length-matched one from elsewhere."""
    turns = _as_turns(turns_or_paths)
    measure = _measure(match, tokenizer)
    exchanges = answered_turns(turns, child)
    replies = sorted({t.text for t in turns if t.speaker == child})
    lengths = measure(replies)
    buckets: dict[int, list[str]] = {}
    for reply, n in zip(replies, lengths, strict=True):
        buckets.setdefault(n, []).append(reply)
    length_of = dict(zip(replies, lengths, strict=True))
    word_sets = {reply: words(reply) for reply in replies}
    rng = random.Random(seed)
    built = PairBuild()
    for adult, reply in exchanges:
        n = length_of[reply.text]
        banned = set() if overlap else words(adult.text)
        rejected = _pick(buckets[n], reply.text, banned, word_sets, rng)
        if rejected is None:
            built.dropped += 1
            continue
        built.append(Pair(prompt=adult.line, chosen=reply.line,
                          rejected=Turn(child, rejected).line, source="transcript",
                          meta={"match": match, "overlap": overlap, "seed": seed, "length": n}))
    return built


def _pick(bucket: list[str], chosen: str, banned: set[str], word_sets: dict[str, set[str]],
          rng: random.Random) -> str | None:
    """A random reply of the bucket that is not chosen and shares no banned word, or None."""
    def fits(text: str) -> bool:
        return text != chosen and not (banned and word_sets[text] & banned)

    for _ in range(min(_RANDOM_TRIES, len(bucket))):
        text = bucket[rng.randrange(len(bucket))]
        if fits(text):
            return text
    start = rng.randrange(len(bucket))  # rare: scan the whole bucket from a random place
    for i in range(len(bucket)):
        text = bucket[(start + i) % len(bucket)]
        if fits(text):
            return text
    return None


def _as_turns(turns_or_paths) -> list[Turn]:
    if isinstance(turns_or_paths, (str, Path)):
        return read_transcripts([turns_or_paths])
    items = list(turns_or_paths)
    if all(isinstance(t, Turn) for t in items):
        return items
    if all(isinstance(t, (str, Path)) for t in items):
        return read_transcripts(items)
    raise DataError("build_transcript_pairs takes a list of Turn or of transcript paths.",
                    "Pass file paths, or turns from parse_transcript/read_transcripts.")


def _measure(match: str, tokenizer):
    """A function giving the length of each reply text: words, or subword tokens."""
    if match == "len":
        return lambda texts: [len(t.split()) for t in texts]
    if match != "tok":
        raise ConfigError(f"match is '{match}'.", "Use 'len' (words) or 'tok' (subword tokens).")
    if tokenizer is None:
        raise ConfigError("match='tok' needs a tokenizer.",
                          "Pass tokenizer=AutoTokenizer.from_pretrained(...), or use match='len'.")
    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]
    return count


def import_transcripts(store: Store, paths: Sequence[str | Path], *, dataset: str,
                       match: MatchKind = "len", overlap: bool = True, tokenizer=None,
                       seed: int = 0, child: str = "CHI", clean: Iterable[str] = (),
                       split: str = "train") -> tuple[Dataset, PairBuild]:
    """Transcript files -> minimal pairs in a new dataset (CHILDES format), with the recipe."""
    require_owner("import data")
    clean = check_clean_ups(clean)
    if not paths:
        raise DataError("No transcript files given.", "Pass one or more .cha or .txt files.")
    built = build_transcript_pairs(read_transcripts(paths, clean), match, overlap, tokenizer,
                                   seed, child)
    if not built:
        raise DataError(f"The transcripts gave no pairs ({built.dropped} answered turns had no "
                        f"length-matched other reply; child code '{child}').",
                        "Check the child's speaker code (--child), add transcripts, or allow "
                        "overlap.")
    recipe = {"op": "transcripts", "files": [Path(p).name for p in paths], "match": match,
              "overlap": overlap, "seed": seed, "child": child, "clean": clean,
              "dropped": built.dropped}
    for pair in built:
        pair.split = split
    with store.write():
        ds = create_dataset(store, dataset, recipe=recipe,
                            prompt_format={"kind": "plain", "template": "{prompt}",
                                           "user_tag": "*MOT:", "reply_tag": f"*{child}:"})
        insert_pairs(store, ds.id, built)
    return get_dataset(store, ds.id), built
