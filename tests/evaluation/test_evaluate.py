"""Evaluating a fine-tuned run named by a unique prefix of its id: the run's own beta scores
implicit rewards, and the stored evaluation names the run by its full id."""

from __future__ import annotations

import json

from dpo_core.cli.main import main
from dpo_core.evaluation.results import list_evals
from dpo_core.jobs.rows import update_job
from dpo_core.store import dumps, open_store
from tests.support import add_pairs, make_lora_run

RUN_ID = "20261202-101500-b7e3"


def test_a_run_prefix_scores_implicit_rewards_with_the_runs_own_beta(workspace_with_tiny,
                                                                       capsys):
    store = open_store(workspace_with_tiny.db_path)
    add_pairs(store)
    make_lora_run(workspace_with_tiny, RUN_ID)
    update_job(store, RUN_ID, config_json=dumps({"model": "builtin:tiny", "beta": 0.3}))
    assert main(["eval", "--model", f"run:{RUN_ID[:15]}", "--dataset", "tiny-pairs",
                 "--method", "implicit-reward", "--limit", "6", "--json"]) == 0
    [summary] = json.loads(capsys.readouterr().out)
    assert summary["beta"] == 0.3  # not the default 0.1
    assert summary["model"] == f"run:{RUN_ID}"
    [stored] = list_evals(store)
    assert (stored["model"], stored["run_id"]) == (f"run:{RUN_ID}", RUN_ID)
