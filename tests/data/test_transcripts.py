"""Transcript minimal pairs: the CHAT parser and the four len/tok x overlap/no_overlap variants."""

from __future__ import annotations

import pytest

from dpo_core.data.demo_datasets import ASSETS, TRANSCRIPTS
from dpo_core.data.transcripts import (
    Turn,
    build_transcript_pairs,
    parse_transcript,
    read_transcripts,
    words,
)
from dpo_core.errors import ConfigError, DataError

CHAT = """@UTF8
@Begin
@Participants:\tCHI Target_Child, MOT Mother
*MOT:\twhat is that ?
%mor:\tpro:int|what cop|be&3S pro:dem|that ?
*CHI:\tit is a ball .
%com:\tchild points
\tat the ball
*FAT:\twhich one do you want , the red one
\tor the blue one ?
*CHI:\tthe blue one .
@End
@Begin
*CHI:\tmore juice !
*INV:\tshall we play ?
@End
"""


def _tag(line: str) -> str:
    return line.split(": ", 1)[1]


@pytest.fixture(scope="module")
def demo_turns() -> list[Turn]:
    return read_transcripts([ASSETS / TRANSCRIPTS])


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_parser_ignores_headers_and_tiers_and_joins_continuations():
    turns = parse_transcript(CHAT)
    assert [(t.speaker, t.text) for t in turns] == [
        ("MOT", "what is that ?"), ("CHI", "it is a ball ."),
        ("FAT", "which one do you want , the red one or the blue one ?"),
        ("CHI", "the blue one ."), ("CHI", "more juice !"), ("INV", "shall we play ?")]
    assert turns[0].line == "*MOT: what is that ?"
    assert turns[3].session == 0 and turns[4].session == 1


def test_plain_text_turns_and_sessions_do_not_answer_across(tmp_path):
    first = tmp_path / "a.txt"
    first.write_text("*MOT: where is the dog ?\n*CHI: under the table .\n*MOT: look !\n")
    second = tmp_path / "b.txt"
    second.write_text("*CHI: a cat .\n*MOT: and this ?\n*CHI: a red car .\n")
    pairs = build_transcript_pairs([first, second], overlap=True)
    assert [(p.prompt, p.chosen) for p in pairs] == [
        ("*MOT: where is the dog ?", "*CHI: under the table ."),
        ("*MOT: and this ?", "*CHI: a red car .")]  # '*MOT: look !' is not answered in a.txt
    assert [p.rejected for p in pairs] == ["*CHI: a red car .", "*CHI: under the table ."]
    assert pairs.dropped == 0


def test_bad_line_names_file_and_line():
    with pytest.raises(DataError, match=r"notes.txt, line 2: 'hello there' is not a turn"):
        parse_transcript("*MOT: hi .\nhello there\n", name="notes.txt")


def test_pair_without_candidate_is_dropped_and_counted():
    turns = parse_transcript("*MOT: what is that ?\n*CHI: a ball .\n*MOT: and that ?\n*CHI: a cup .")
    built = build_transcript_pairs(turns, overlap=False)
    assert len(built) == 2 and built.dropped == 0
    lonely = parse_transcript("*MOT: what is that ?\n*CHI: a ball .\n*CHI: a big cup .")
    built = build_transcript_pairs(lonely)
    assert list(built) == [] and built.dropped == 1


@pytest.mark.parametrize("match", ["len", "tok"])
@pytest.mark.parametrize("overlap", [True, False])
def test_variants_match_length_and_respect_overlap(demo_turns, tiny_tokenizer, match, overlap):
    tokenizer = tiny_tokenizer if match == "tok" else None
    pairs = build_transcript_pairs(demo_turns, match=match, overlap=overlap, tokenizer=tokenizer)
    assert len(pairs) > 1000

    def length(line: str) -> int:
        text = _tag(line)
        if match == "len":
            return len(text.split())
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    for pair in pairs:
        assert pair.prompt.startswith(("*MOT: ", "*FAT: ")) and pair.chosen.startswith("*CHI: ")
        assert pair.rejected.startswith("*CHI: ") and pair.rejected != pair.chosen
        assert length(pair.rejected) == length(pair.chosen) == pair.meta["length"]
        assert pair.meta == {"match": match, "overlap": overlap, "seed": 0,
                             "length": pair.meta["length"]}
        assert pair.source == "transcript"
        if not overlap:
            assert not words(_tag(pair.prompt)) & words(_tag(pair.rejected))
    if overlap:  # overlap allowed: some rejected replies do share a word with the prompt
        assert any(words(_tag(p.prompt)) & words(_tag(p.rejected)) for p in pairs)


def test_seeded_and_deterministic(demo_turns):
    one = build_transcript_pairs(demo_turns, overlap=False, seed=7)
    two = build_transcript_pairs(demo_turns, overlap=False, seed=7)
    other = build_transcript_pairs(demo_turns, overlap=False, seed=8)
    assert [p.rejected for p in one] == [p.rejected for p in two]
    assert [p.rejected for p in one] != [p.rejected for p in other]
    assert [p.chosen for p in one] == [p.chosen for p in other]


def test_tok_without_tokenizer_says_how_to_fix(demo_turns):
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        build_transcript_pairs(demo_turns, match="tok")
