"""The Space's vote box: identical answers, repeats, a rate limit per visitor and per session,
a bounded file; and the lab importing Space votes as a dataset flagged `unreviewed`."""

from __future__ import annotations

import json

import pytest

from dpo_core.chat.votes import UNREVIEWED, import_space_votes
from dpo_core.cli.main import main
from dpo_core.data.browse import count_matches
from dpo_core.data.datasets import get_dataset, iter_pairs
from dpo_core.demo.votes import (
    DUPLICATE,
    FULL,
    IDENTICAL,
    PAIRS_FILE,
    TOO_FAST,
    VoteBox,
    vote_record,
)
from dpo_core.errors import DataError


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def vote(verdict="left", prompt="what is that ?", left="a ball .", right="no ."):
    return vote_record(verdict, prompt, left, right, {"left": "b", "right": "t"}, {})


def lines(folder, name=PAIRS_FILE) -> list[dict]:
    path = folder / name
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def test_a_preference_between_identical_answers_is_refused(tmp_path):
    box = VoteBox(tmp_path, votes_per_minute=5, max_votes=10)
    assert box.cast(vote(left="a ball .", right="a ball ."), "1.2.3.4", "s1") == IDENTICAL
    assert box.cast(vote("right", left="same", right="same"), "1.2.3.4", "s1") == IDENTICAL
    assert lines(tmp_path) == []
    assert box.cast(vote("tie", left="same", right="same"), "1.2.3.4", "s1") is None  # not a pair


def test_the_same_answers_are_voted_once(tmp_path):
    box = VoteBox(tmp_path, votes_per_minute=5, max_votes=10)
    assert box.cast(vote("left"), "1.2.3.4", "s1") is None
    assert box.cast(vote("right"), "5.6.7.8", "s2") == DUPLICATE  # either way round
    assert box.cast(vote("tie"), "5.6.7.8", "s2") == DUPLICATE
    assert len(lines(tmp_path)) == 1
    again = VoteBox(tmp_path, votes_per_minute=5, max_votes=10)  # the Space restarted
    assert again.cast(vote("left"), "9.9.9.9", "s3") == DUPLICATE


def test_votes_are_rate_limited_per_visitor_and_per_session(tmp_path):
    clock = Clock()
    box = VoteBox(tmp_path, votes_per_minute=3, max_votes=100, clock=clock)
    results = [box.cast(vote(prompt=f"p{i}"), "1.2.3.4", f"session-{i}") for i in range(5)]
    assert results == [None, None, None, TOO_FAST, TOO_FAST]  # one visitor, many sessions
    results = [box.cast(vote(prompt=f"q{i}"), f"10.0.0.{i}", "one-session") for i in range(5)]
    assert results == [None, None, None, TOO_FAST, TOO_FAST]  # one session, many addresses
    clock.now += 61  # a minute later both may vote again
    assert box.cast(vote(prompt="later"), "1.2.3.4", "one-session") is None
    assert len(lines(tmp_path)) == 7


def test_a_full_vote_file_refuses_more_votes(tmp_path):
    clock = Clock()
    box = VoteBox(tmp_path, votes_per_minute=100, max_votes=3, clock=clock)
    assert [box.cast(vote(prompt=f"p{i}"), f"v{i}", f"s{i}") for i in range(5)] == \
        [None, None, None, FULL, FULL]
    assert box.cast(vote("tie", prompt="other"), "v9", "s9") is None  # its own file and cap
    assert VoteBox(tmp_path, 100, 3).cast(vote(prompt="new"), "v", "s") == FULL  # restarted
    assert len(lines(tmp_path)) == 3


# ---------------------------------------------------------------------------------------------
# Importing Space votes into the lab
# ---------------------------------------------------------------------------------------------
def write_votes(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_space_votes_import_as_a_dataset_flagged_unreviewed(store, tmp_path):
    path = tmp_path / "votes.jsonl"
    good = vote("left", left="it is a ball .", right="no .")
    write_votes(path, [good, vote("right", prompt="where ?", left="x", right="there !"),
                       good, {**vote("left"), "chosen": "same", "rejected": "same"},
                       vote("tie", prompt="tied")])
    result = import_space_votes(store, path, "space-votes")
    assert (result.pairs, result.skipped) == (2, {"identical": 1, "duplicate": 1,
                                                  "not a preference": 1})
    ds = get_dataset(store, "space-votes")
    pairs = list(iter_pairs(store, ds.id, None))
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        ("what is that ?", "it is a ball .", "no ."), ("where ?", "there !", "x")]
    assert all(p.flags == [UNREVIEWED] and p.source == "space" for p in pairs)
    assert pairs[0].meta["verdict"] == "left" and "models" in pairs[0].meta
    assert ds.recipe["reviewed"] is False and "not reviewed" in ds.description
    assert count_matches(store, ds.id, flag=UNREVIEWED) == 2  # the Data page's flag filter


def test_a_broken_votes_file_names_the_line_and_writes_nothing(store, tmp_path):
    path = tmp_path / "votes.jsonl"
    path.write_text(json.dumps(vote()) + "\n{not json\n")
    with pytest.raises(DataError, match="line 2 is not JSON"):
        import_space_votes(store, path, "broken")
    path.write_text(json.dumps({**vote(), "chosen": 3}) + "\n")
    with pytest.raises(DataError, match="line 1 lacks a text prompt"):
        import_space_votes(store, path, "broken")
    write_votes(path, [vote("tie")])
    with pytest.raises(DataError, match="no preference votes"):
        import_space_votes(store, path, "broken")
    assert not [r for r in store.query("SELECT name FROM datasets WHERE name='broken'")]


def test_cli_imports_space_votes(store, tmp_path, capsys):
    path = tmp_path / "votes.jsonl"
    write_votes(path, [vote(), vote("left", left="same", right="same")])
    assert main(["import-space-votes", str(path), "--dataset", "from-space"]) == 0
    out = capsys.readouterr().out
    assert "Imported 1 pairs into 'from-space'" in out and "unreviewed" in out
    assert "1 identical" in out
    assert main(["import-space-votes", str(tmp_path / "none.jsonl"), "--dataset", "x"]) == 2
    assert "No votes file" in capsys.readouterr().err


def test_the_visitor_is_the_address_a_forger_cannot_choose(monkeypatch):
    from types import SimpleNamespace

    from dpo_core.demo.app import visitor_of

    request = SimpleNamespace(headers={"x-forwarded-for": "6.6.6.6, 10.1.2.3"},
                              client=SimpleNamespace(host="127.0.0.1"))
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert visitor_of(request) == "127.0.0.1"  # no proxy in front: the header is the visitor's
    monkeypatch.setenv("SPACE_ID", "someone/demo")
    assert visitor_of(request) == "10.1.2.3"  # the hop the Space's proxy appended
