"""Importing an external training log as a read-only run (TRL CSV, trainer_state.json, W&B)."""

import json

import pytest

from dpo_core.errors import DataError
from dpo_core.training.external_logs import import_training_log
from dpo_core.training.metrics import read_metrics
from dpo_core.training.runs import get_run
from tests.support import shared_data


def values(store, run_id, key, split=None):
    rows = [r for r in read_metrics(store, run_id) if r["key"] == key
            and (split is None or r["split"] == split)]
    return {r["step"]: r["value"] for r in rows}


def test_childes_metrics_csv_imports_every_step(store):
    path = shared_data("childes-dpo", "training_metrics_real.csv")
    run_id = import_training_log(store, path, "childes-real")
    run = get_run(store, run_id)
    assert (run["kind"], run["status"], run["read_only"]) == ("external", "completed", 1)
    assert run["name"] == "childes-real" and run["step"] == run["total_steps"] == 5630
    loss = values(store, run_id, "loss", "train")
    assert len(loss) == 563 and min(loss) == 10 and max(loss) == 5630
    assert loss[10] == pytest.approx(0.6913) and loss[5630] == pytest.approx(0.044)
    keys = {r["key"] for r in read_metrics(store, run_id)}
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
            "logps/chosen", "logps/rejected", "grad_norm", "learning_rate", "epoch"} <= keys


def test_small_trl_csv_with_eval_rows_and_nan(store, tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,rewards/margins,eval_loss,eval_rewards/accuracies,epoch\n"
                    "1,0.69,0.01,,,0.1\n"
                    "2,nan,0.02,,,0.2\n"
                    "2,,,0.68,0.6,0.2\n")
    run_id = import_training_log(store, path, "small")
    assert values(store, run_id, "loss", "train") == {1: 0.69, 2: None}  # nan kept as NULL
    assert values(store, run_id, "eval_loss", "eval") == {2: 0.68}
    assert values(store, run_id, "eval_rewards/accuracies", "eval") == {2: 0.6}
    assert values(store, run_id, "rewards/margins") == {1: 0.01, 2: 0.02}


def test_trainer_state_json(store, tmp_path):
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 2, "log_history": [
        {"step": 1, "loss": 0.7, "rewards/accuracies": 0.5, "epoch": 0.5},
        {"step": 2, "eval_loss": 0.65, "eval_rewards/accuracies": 0.75, "epoch": 1.0},
    ]}))
    run_id = import_training_log(store, path, None)
    assert get_run(store, run_id)["name"] == "trainer_state"
    assert values(store, run_id, "loss", "train") == {1: 0.7}
    assert values(store, run_id, "eval_rewards/accuracies", "eval") == {2: 0.75}


def test_wandb_history_prefixes_become_trl_keys(store, tmp_path):
    path = tmp_path / "wandb.csv"
    path.write_text("_step,train/global_step,train/loss,eval/loss,eval/rewards/accuracies,_runtime\n"
                    "0,5,0.6,,,12.5\n"
                    "1,10,,0.55,0.7,20.0\n")
    run_id = import_training_log(store, path, "wb")
    assert values(store, run_id, "loss", "train") == {5: 0.6}
    assert values(store, run_id, "eval_loss", "eval") == {10: 0.55}
    assert values(store, run_id, "eval_rewards/accuracies", "eval") == {10: 0.7}
    assert not values(store, run_id, "_runtime")


def test_file_without_step_column_is_a_clear_error(store, tmp_path):
    path = tmp_path / "nostep.csv"
    path.write_text("loss,rewards/margins\n0.6,0.1\n")
    with pytest.raises(DataError) as err:
        import_training_log(store, path, "x")
    assert str(err.value).startswith(f"{path} has no step column (columns: loss, rewards/margins)")
    assert "step, global_step, train/global_step" in err.value.fix
    assert store.scalar("SELECT COUNT(*) FROM runs") == 0


def test_bad_cell_names_row_and_column(store, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("step,loss\n1,0.6\n2,oops\n3,0.5\n")
    with pytest.raises(DataError, match=r"row 3, column loss: 'oops' is not a number"):
        import_training_log(store, path, "x")


def test_wandb_runs_table_is_refused(store):
    path = shared_data("orca-sweep", "wandb_sweep_export.csv")
    with pytest.raises(DataError, match="W&B runs table"):
        import_training_log(store, path, "sweep")


def test_cli_import_log(workspace, tmp_path, capsys):
    from dpo_core.cli.main import main

    path = tmp_path / "log.csv"
    path.write_text("step,loss\n1,0.7\n2,0.6\n")
    assert main(["import-log", str(path), "--name", "cli-log", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "cli-log" and out["steps"] == 2 and out["keys"] == ["loss"]
    assert main(["import-log", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_imported_log_shows_its_source_and_is_not_published(workspace, tmp_path, capsys):
    from dpo_core.cli.main import main

    path = tmp_path / "log.csv"
    path.write_text("step,loss\n1,0.7\n2,0.6\n")
    assert main(["import-log", str(path), "--name", "old-run", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["runs", "show", run_id]) == 0
    assert f"imported log of {path}" in capsys.readouterr().out.splitlines()[0]
    assert main(["export-space", run_id, "--out", str(tmp_path / "space")]) == 2
    assert "imported training log" in capsys.readouterr().err
