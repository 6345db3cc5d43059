"""Roles are checked in the library: an annotator and a viewer are refused every owner verb, a
viewer changes nothing, and the store is unchanged by a refusal."""

from __future__ import annotations

import pytest

from dpo_core.annotation.accounts import AccessError, add_account, disable_account
from dpo_core.annotation.agreement import adjudicate, disagreements, task_agreement
from dpo_core.annotation.consensus import consensus_dataset
from dpo_core.annotation.judgments import judge, next_item, progress
from dpo_core.annotation.tasks import close_task, create_task, get_task, task_pair_ids
from tests.annotation.helpers import PASSWORD, pairs_dataset, team

OWNER_VERBS = {
    "add an account": lambda s, who, pid: add_account(s, who, "eve", PASSWORD, "owner"),
    "disable an account": lambda s, who, pid: disable_account(s, who, "boss"),
    "create a task": lambda s, who, pid: create_task(s, who, "t2", "prefs", k=1),
    "close a task": lambda s, who, pid: close_task(s, who, "t"),
    "adjudicate": lambda s, who, pid: adjudicate(s, who, "t", pid, "chosen"),
    "write the consensus": lambda s, who, pid: consensus_dataset(s, who, "t"),
}
READ_VERBS = {
    "see agreement": lambda s, who, pid: task_agreement(s, who, "t"),
    "see disagreements": lambda s, who, pid: disagreements(s, who, "t"),
}
JUDGE_VERBS = {
    "take a pair": lambda s, who, pid: next_item(s, who, "t"),
    "judge": lambda s, who, pid: judge(s, who, "t", pid, "A"),
}


@pytest.fixture
def lab(memory_store):
    people = team(memory_store, "ann", "bob", viewer=True)
    pairs_dataset(memory_store, 3)
    create_task(memory_store, people["boss"], "t", "prefs", k=1)
    return memory_store, people, task_pair_ids(memory_store, get_task(memory_store, "t"))[0]


def _snapshot(store) -> list:
    return [tuple(r) for table in ("accounts", "annotation_tasks", "judgments",
                                   "adjudications", "datasets")
            for r in store.query(f"SELECT * FROM {table}")]


@pytest.mark.parametrize("verb", OWNER_VERBS)
@pytest.mark.parametrize("who", ["ann", "watcher"])
def test_annotators_and_viewers_are_refused_every_owner_verb(lab, verb, who):
    store, people, pid = lab
    before = _snapshot(store)
    with pytest.raises(AccessError, match=rf"{who} \((annotator|viewer)\) may not"):
        OWNER_VERBS[verb](store, people[who], pid)
    assert _snapshot(store) == before


@pytest.mark.parametrize("verb", JUDGE_VERBS)
def test_a_viewer_cannot_judge(lab, verb):
    store, people, pid = lab
    with pytest.raises(AccessError, match="watcher \\(viewer\\) may not judge pairs"):
        JUDGE_VERBS[verb](store, people["watcher"], pid)


@pytest.mark.parametrize("verb", READ_VERBS)
def test_an_annotator_cannot_read_the_teams_judgments_but_a_viewer_can(lab, verb):
    store, people, pid = lab
    with pytest.raises(AccessError, match="ann \\(annotator\\) may not"):
        READ_VERBS[verb](store, people["ann"], pid)
    READ_VERBS[verb](store, people["watcher"], pid)
    assert progress(store, people["watcher"], "t")["pairs"] == 3
