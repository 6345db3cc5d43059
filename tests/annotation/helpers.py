"""Builders the annotation tests share: a lab with an owner, annotators and a small dataset."""

from __future__ import annotations

from dpo_core.annotation.accounts import LOCAL_OWNER, add_account
from dpo_core.data.datasets import Pair, create_dataset, insert_pairs

PASSWORD = "correct horse battery"


def team(store, *names: str, viewer: bool = False):
    """An owner account plus annotators `names` (and a viewer); returns {name: Account}."""
    people = {"boss": add_account(store, LOCAL_OWNER, "boss", PASSWORD, "owner")}
    for name in names:
        people[name] = add_account(store, people["boss"], name, PASSWORD, "annotator")
    if viewer:
        people["watcher"] = add_account(store, people["boss"], "watcher", PASSWORD, "viewer")
    return people


def pairs_dataset(store, n: int = 10, name: str = "prefs"):
    ds = create_dataset(store, name, prompt_format={"kind": "plain"})
    insert_pairs(store, ds.id, [Pair(f"prompt {i}", f"good {i}", f"bad {i}",
                                     split="eval" if i % 5 == 4 else "train",
                                     meta={"columns": {"origin": f"row{i}"}})
                                for i in range(n)])
    return ds


def answer(store, person, task, pair_id: int, label: str, **kw):
    """Judge a pair with a label in the dataset's terms (the A/B the person would click)."""
    from dpo_core.annotation.judgments import judge, sides_swapped
    from dpo_core.annotation.tasks import get_task

    if label in ("chosen", "rejected"):
        swapped = sides_swapped(get_task(store, task).id, person.id, pair_id)
        label = "A" if (label == "chosen") != swapped else "B"
    return judge(store, person, task, pair_id, label, **kw)
