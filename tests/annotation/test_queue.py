"""The review queue: hidden labels, sides in a per-annotator order, k judgments per pair, no
judgment seen by another annotator, a queue that resumes, and concurrent annotators."""

from __future__ import annotations

import threading
from dataclasses import fields

import pytest

from dpo_core.annotation.accounts import LOCAL_OWNER
from dpo_core.annotation.judgments import (
    Item,
    judge,
    next_item,
    progress,
    read_judgments,
    sides_swapped,
)
from dpo_core.annotation.tasks import create_task, get_task
from dpo_core.data.datasets import delete_dataset
from dpo_core.errors import ConflictError, DataError
from dpo_core.store import Store
from tests.annotation.helpers import pairs_dataset, team


def test_an_item_carries_no_label_and_its_sides_follow_the_annotators_order(memory_store):
    people = team(memory_store, "ann", "bob")
    pairs_dataset(memory_store, 20)
    create_task(memory_store, people["boss"], "t", "prefs", k=2, guidelines="Be kind.")
    assert {f.name for f in fields(Item)} == {"task", "pair_id", "prompt", "a", "b",
                                              "guidelines", "done", "total"}
    orders = {}
    for name in ("ann", "bob"):
        seen = []
        while (item := next_item(memory_store, people[name], "t")) is not None:
            assert item.guidelines == "Be kind."
            i = item.prompt.split()[-1]
            assert {item.a, item.b} == {f"good {i}", f"bad {i}"}
            swapped = item.a == f"bad {i}"
            assert swapped == sides_swapped(get_task(memory_store, "t").id, people[name].id,
                                            item.pair_id)
            again = next_item(memory_store, people[name], "t")  # a reload shows the same order
            assert (again.pair_id, again.a) == (item.pair_id, item.a)
            seen.append(swapped)
            judge(memory_store, people[name], "t", item.pair_id, "A")
        orders[name] = seen
    for seen in orders.values():  # both orders occur for each annotator
        assert any(seen) and not all(seen)
    assert orders["ann"] != orders["bob"]


def test_answers_are_stored_in_the_datasets_terms(memory_store):
    people = team(memory_store, "ann")
    pairs_dataset(memory_store, 6)
    create_task(memory_store, people["boss"], "t", "prefs", k=1)
    while (item := next_item(memory_store, people["ann"], "t")) is not None:
        i = item.prompt.split()[-1]
        judge(memory_store, people["ann"], "t", item.pair_id, "A" if item.a == f"good {i}" else "B")
    assert {j["label"] for j in read_judgments(memory_store, people["boss"], "t")} == {"chosen"}


def test_a_pair_goes_to_annotators_until_it_has_k_judgments_never_twice_to_one(memory_store):
    people = team(memory_store, "ann", "bob", "cy")
    pairs_dataset(memory_store, 4)
    create_task(memory_store, people["boss"], "t", "prefs", k=2)
    judged = {name: [] for name in ("ann", "bob", "cy")}
    for name in ("ann", "bob", "cy"):
        while (item := next_item(memory_store, people[name], "t")) is not None:
            assert item.pair_id not in judged[name]
            judge(memory_store, people[name], "t", item.pair_id, "tie")
            judged[name].append(item.pair_id)
    assert [len(v) for v in judged.values()] == [4, 4, 0]  # cy finds every pair complete
    with pytest.raises(ConflictError, match="already has its 2 judgment"):
        judge(memory_store, people["cy"], "t", judged["ann"][0], "A")
    with pytest.raises(ConflictError, match="ann already judged pair"):
        judge(memory_store, people["ann"], "t", judged["ann"][0], "B")
    assert progress(memory_store, people["boss"], "t")["complete"] == 4


def test_a_shown_pair_is_held_for_its_annotator_and_comes_back_after_a_closed_browser(
        memory_store):
    people = team(memory_store, "ann", "bob")
    pairs_dataset(memory_store, 3)
    create_task(memory_store, people["boss"], "t", "prefs", k=1)
    first = next_item(memory_store, people["ann"], "t")
    assert next_item(memory_store, people["bob"], "t").pair_id != first.pair_id
    assert next_item(memory_store, people["ann"], "t").pair_id == first.pair_id  # resumes


def test_an_annotator_never_sees_another_judgment(memory_store):
    people = team(memory_store, "ann", "bob")
    pairs_dataset(memory_store, 2)
    create_task(memory_store, people["boss"], "t", "prefs", k=2, ask_reason=True)
    item = next_item(memory_store, people["ann"], "t")
    judge(memory_store, people["ann"], "t", item.pair_id, "A", reason="kinder")
    assert read_judgments(memory_store, people["bob"], "t") == []
    assert "per_annotator" not in progress(memory_store, people["bob"], "t")
    assert "kinder" not in repr(next_item(memory_store, people["bob"], "t"))
    assert [j["reason"] for j in read_judgments(memory_store, people["boss"], "t")] == ["kinder"]


def test_bad_tasks_are_refused_with_the_fix(memory_store):
    people = team(memory_store, "ann", "bob")
    pairs_dataset(memory_store, 3)
    with pytest.raises(DataError, match=r"k is 4 but only 3 account\(s\) can judge.*Lower k to 3"):
        create_task(memory_store, people["boss"], "t", "prefs", k=4)
    with pytest.raises(DataError, match="k is 6: each pair is judged by 1 to 5"):
        create_task(memory_store, people["boss"], "t", "prefs", k=6)
    with pytest.raises(DataError, match="Unknown check 'nope'"):
        create_task(memory_store, people["boss"], "t", "prefs", k=1, check="nope")
    assert create_task(memory_store, people["boss"], "t", "prefs", k=1, guidelines="").pairs == 3


def test_a_single_user_lab_annotates_as_its_local_owner(memory_store):
    pairs_dataset(memory_store, 2)
    with pytest.raises(DataError, match="k is 2 but only 1 account"):
        create_task(memory_store, LOCAL_OWNER, "t", "prefs", k=2)
    create_task(memory_store, LOCAL_OWNER, "t", "prefs", k=1)
    item = next_item(memory_store, LOCAL_OWNER, "t")
    judge(memory_store, LOCAL_OWNER, "t", item.pair_id, "both_bad")
    assert progress(memory_store, LOCAL_OWNER, "t")["mine"] == 1


def test_a_check_filter_takes_only_the_failing_pairs(memory_store):
    from dpo_core.data.datasets import Pair, insert_pairs

    ds = pairs_dataset(memory_store, 4)
    insert_pairs(memory_store, ds.id, [Pair("same", "x", "x")])
    task = create_task(memory_store, LOCAL_OWNER, "t", "prefs", k=1, check="identical")
    assert task.pairs == 1 and task.check == "identical"


def test_a_deleted_dataset_closes_its_task_cleanly(memory_store):
    pairs_dataset(memory_store, 2)
    create_task(memory_store, LOCAL_OWNER, "t", "prefs", k=1)
    delete_dataset(memory_store, "prefs")
    task = get_task(memory_store, "t")
    assert task.status == "closed" and "prefs was deleted" in task.status_reason
    with pytest.raises(DataError, match="The task t is closed"):
        next_item(memory_store, LOCAL_OWNER, "t")


def test_three_annotators_judging_at_once_lose_and_duplicate_nothing(store):
    """3 annotators x 200 pairs with k=2, each in its own thread and connection."""
    people = team(store, "ann", "bob", "cy")
    pairs_dataset(store, 200)
    create_task(store, people["boss"], "t", "prefs", k=2)
    counts, errors = {}, []

    def work(name: str) -> None:
        own = Store(store.path)
        n = 0
        try:
            while (item := next_item(own, people[name], "t")) is not None:
                try:
                    judge(own, people[name], "t", item.pair_id, "A")
                    n += 1
                except ConflictError:
                    pass
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            own.close()
            counts[name] = n

    threads = [threading.Thread(target=work, args=(n,)) for n in ("ann", "bob", "cy")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = store.query("SELECT pair_id, COUNT(*) AS n, COUNT(DISTINCT account_id) AS d "
                       "FROM judgments GROUP BY pair_id")
    assert len(rows) == 200 and all(r["n"] == 2 == r["d"] for r in rows)
    assert sum(counts.values()) == 400  # every saved judgment counted, none lost
