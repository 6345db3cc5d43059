"""The consensus dataset trains like any other: a tiny run on it completes."""

from __future__ import annotations

import pytest

from dpo_core.annotation.consensus import consensus_dataset
from dpo_core.annotation.judgments import next_item
from dpo_core.annotation.tasks import create_task
from dpo_core.training import runs
from tests.annotation.helpers import answer, pairs_dataset, team
from tests.support import tiny_config


@pytest.mark.slow
def test_a_tiny_run_trains_on_the_consensus(store, workspace_with_tiny):
    people = team(store, "ann", "bob")
    pairs_dataset(store, 10)
    create_task(store, people["boss"], "t", "prefs", k=2)
    for name in ("ann", "bob"):
        while (item := next_item(store, people[name], "t")) is not None:
            answer(store, people[name], "t", item.pair_id,
                   "rejected" if item.pair_id % 3 == 0 else "chosen")
    ds = consensus_dataset(store, people["boss"], "t", into="agreed")
    assert ds.recipe["kept"] == 10 and ds.recipe["swapped"] == 3
    run_id = runs.start_run(store, tiny_config(dataset="agreed", max_steps=2, sample_prompts=0,
                                               save_steps=10))
    run = runs.wait_run(store, run_id, poll=0.3)
    assert run["status"] == "completed", run["error_text"]
