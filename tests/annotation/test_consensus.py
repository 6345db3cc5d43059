"""The consensus dataset: majority or the owner's decision, swaps and edits applied, ties and
'both bad' dropped or kept, judgments kept in metadata and export columns, lineage kept."""

from __future__ import annotations

import csv

import pytest

from dpo_core.annotation.agreement import adjudicate
from dpo_core.annotation.consensus import consensus_dataset
from dpo_core.annotation.tasks import create_task, get_task, task_pair_ids
from dpo_core.data.datasets import get_dataset, iter_pairs, lineage
from dpo_core.data.exporter import export_pairs
from dpo_core.errors import DataError
from tests.annotation.helpers import answer, pairs_dataset, team

C, R = "chosen", "rejected"


@pytest.fixture
def judged(memory_store):
    """6 pairs, k=2 by ann and bob: agree chosen, agree rejected (+ an edit), split (owner
    decides rejected), split (undecided), tie, both bad; then a 7th pair with one judgment."""
    people = team(memory_store, "ann", "bob")
    pairs_dataset(memory_store, 7)
    create_task(memory_store, people["boss"], "t", "prefs", k=2, allow_edit=True,
                ask_strength=True, ask_reason=True)
    ids = task_pair_ids(memory_store, get_task(memory_store, "t"))
    plan = [(C, C), (R, R), (C, R), (R, C), ("tie", "tie"), ("both_bad", "both_bad")]
    for pid, (a, b) in zip(ids, plan, strict=False):
        answer(memory_store, people["ann"], "t", pid, a, strength="clearly", reason="why")
        edit = "better 1" if pid == ids[1] else None
        answer(memory_store, people["bob"], "t", pid, b, edit=edit)
    answer(memory_store, people["ann"], "t", ids[6], C)
    adjudicate(memory_store, people["boss"], "t", ids[2], R)
    return memory_store, people, ids


def test_consensus_applies_majority_owner_decisions_swaps_and_edits(judged):
    store, people, ids = judged
    ds = consensus_dataset(store, people["boss"], "t", into="prefs-agreed")
    pairs = {p.prompt: p for p in iter_pairs(store, ds.id)}
    assert sorted(pairs) == ["prompt 0", "prompt 1", "prompt 2"]
    assert (pairs["prompt 0"].chosen, pairs["prompt 0"].rejected) == ("good 0", "bad 0")
    assert (pairs["prompt 1"].chosen, pairs["prompt 1"].rejected) == ("better 1", "good 1")
    assert (pairs["prompt 2"].chosen, pairs["prompt 2"].rejected) == ("bad 2", "good 2")
    assert set(pairs["prompt 1"].flags) >= {"annotated", "swapped", "edited"}
    assert pairs["prompt 2"].meta["annotation"]["decided_by"] == "owner:boss"
    assert pairs["prompt 0"].meta["annotation"]["decided_by"] == "majority"
    judgments = pairs["prompt 0"].meta["annotation"]["judgments"]
    assert [(j["annotator"], j["label"], j["strength"], j["reason"]) for j in judgments] == \
        [("ann", C, "clearly", "why"), ("bob", C, None, "")]
    assert ds.recipe["dropped"] == {"undecided": 1, "tie": 1, "both_bad": 1, "pending": 1}
    assert ds.recipe["swapped"] == 2 and ds.recipe["edited"] == 1


def test_consensus_remembers_its_parent_task_and_recipe(judged):
    store, people, _ = judged
    ds = consensus_dataset(store, people["boss"], "t")
    assert ds.name == "prefs-t" and ds.parent_id == get_dataset(store, "prefs").id
    assert ds.recipe["op"] == "annotate" and ds.recipe["task"] == "t"
    assert ds.recipe["annotators"] == ["ann", "bob"] and ds.prompt_format == {"kind": "plain"}
    assert lineage(store, ds.id) == [{"name": "prefs", "id": ds.parent_id, "op": "annotate"}]


def test_ties_and_both_bad_can_be_kept_as_labelled(judged):
    store, people, _ = judged
    ds = consensus_dataset(store, people["boss"], "t", ties="keep", both_bad="keep")
    pairs = {p.prompt: p for p in iter_pairs(store, ds.id)}
    assert (pairs["prompt 4"].chosen, pairs["prompt 4"].rejected) == ("good 4", "bad 4")
    assert "tie" in pairs["prompt 4"].flags and "both_bad" in pairs["prompt 5"].flags
    assert pairs["prompt 4"].split == "eval"  # the split is kept


def test_export_keeps_the_per_annotator_columns(judged, tmp_path):
    store, people, _ = judged
    ds = consensus_dataset(store, people["boss"], "t")
    export_pairs(store, ds.id, tmp_path / "out.csv")
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert list(rows[0]) == ["prompt", "chosen", "rejected", "origin", "annotator_ann",
                             "annotator_bob", "consensus"]
    assert [(r["annotator_ann"], r["annotator_bob"], r["consensus"]) for r in rows] == \
        [(C, C, C), (R, R, R), (C, R, R)]


def test_nothing_to_keep_is_a_clear_error(memory_store):
    people = team(memory_store, "ann")
    pairs_dataset(memory_store, 2)
    create_task(memory_store, people["boss"], "t", "prefs", k=1)
    with pytest.raises(DataError, match="No pair of the task t has a consensus to keep"):
        consensus_dataset(memory_store, people["boss"], "t")
    with pytest.raises(DataError, match="ties is 'maybe'"):
        consensus_dataset(memory_store, people["boss"], "t", ties="maybe")
