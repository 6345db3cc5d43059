"""A sweep run elsewhere (the W&B runs table of ../shared/data/orca-sweep) imported as a sweep's
leaderboard: each row a read-only run with its config and summary metrics."""

from __future__ import annotations

import json

import pytest

from dpo_core.cli.main import main
from dpo_core.errors import DataError, JobError
from dpo_core.sweeps import control
from dpo_core.sweeps.imported import import_sweep_export, is_runs_table
from dpo_core.sweeps.report import leaderboard
from dpo_core.training.metrics import last_values
from dpo_core.training.runs import get_run
from tests.support import shared_data


@pytest.fixture
def orca():
    return shared_data("orca-sweep", "wandb_sweep_export.csv")


def test_the_orca_export_becomes_a_ranked_read_only_sweep(store, orca):
    assert is_runs_table(orca)
    result = import_sweep_export(store, orca, "orca")
    assert result["runs"] == 14 and result["metric"] == "eval_rewards/accuracies"
    assert result["best"]["name"] == "ruby-sweep-8"
    sweep = control.get_sweep(store, "orca")
    assert sweep["status"] == "imported" and "wandb_sweep_export.csv" in sweep["config"]["source"]
    rows = leaderboard(sweep)
    accuracies = [r["eval_rewards/accuracies"] for r in rows]
    assert accuracies == sorted(accuracies, reverse=True) and len(rows) == 14
    top = rows[0]
    assert (top["name"], top["beta"], top["per_device_train_batch_size"]) == \
        ("ruby-sweep-8", 0.1, 8)
    assert top["sweep"] == "r6rta83w"  # two W&B sweeps in one file: which one is a column
    assert set(sweep["config"]["parameters"]) >= {"beta", "learning_rate", "sweep"}

    run = get_run(store, top["run_id"])
    assert (run["kind"], run["status"], run["read_only"], run["step"]) == \
        ("external", "completed", 1, 500)
    assert run["config"]["beta"] == 0.1 and run["config"]["wandb"]["state"] == "finished"
    finals = last_values(store, run["id"])
    assert finals["eval_rewards/accuracies"] == pytest.approx(top["eval_rewards/accuracies"])
    assert {"eval_loss", "loss", "train_runtime", "rewards/margins"} <= set(finals)


def test_an_imported_sweep_cannot_be_resumed_or_extended(store, orca):
    sweep_id = import_sweep_export(store, orca)["sweep_id"]
    for action in (lambda: control.resume_sweep(store, sweep_id),
                   lambda: control.extend_sweep(store, sweep_id, 20)):
        with pytest.raises(JobError, match="was imported"):
            action()


def test_import_log_takes_the_runs_table_and_sweeps_show_ranks_it(workspace, orca, capsys):
    assert main(["import-log", str(orca), "--name", "orca"]) == 0
    out = capsys.readouterr().out
    assert "Imported 14 runs as sweep" in out and "best: ruby-sweep-8" in out
    assert main(["sweeps", "show", "orca", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "imported" and shown["best"]["name"] == "ruby-sweep-8"
    assert main(["sweeps", "show", "orca"]) == 0
    assert "eval_loss" in capsys.readouterr().out


def test_a_runs_table_without_config_columns_names_the_fix(store, tmp_path):
    bare = tmp_path / "runs.csv"
    bare.write_text('"Name","State","eval/loss"\n"a","finished","0.5"\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        import_sweep_export(store, bare)
    assert str(bare) in err.value.message and "config columns" in err.value.fix
    assert not control.list_sweeps(store)  # nothing half-imported


def test_the_sweeps_page_shows_an_imported_sweep_read_only(lab, orca):
    from dpo_core.store import open_store
    from tests.support import open_page

    sweep_id = import_sweep_export(open_store(lab.db_path), orca, "orca")["sweep_id"]
    at = open_page("pages/sweeps.py", sweep_id=sweep_id)
    assert not at.exception, [e.value for e in at.exception]
    assert any("Imported from" in c.value for c in at.caption)
    labels = {b.label for b in at.button}
    assert "Open in Runs" in labels and not labels & {"Resume", "Extend budget", "Export",
                                                       "Chat with it"}
    board = next(d for d in at.dataframe if "eval_rewards/accuracies" in d.value.columns)
    assert board.value["name"].iloc[0] == "ruby-sweep-8"
