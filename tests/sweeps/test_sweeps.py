"""Sweeps on the tiny model: random and Bayesian sweeps from the CLI, a failing run that does not
stop the queue, gains over the baseline, pause/resume/extend, and the Sweeps page."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dpo_core.cli.main import main as cli
from dpo_core.recipes import recipe_path
from dpo_core.sweeps.config import SweepConfig, run_config, validate_sweep
from dpo_core.sweeps.control import get_sweep, pause_sweep, start_sweep, wait_sweep
from dpo_core.sweeps.report import best_trial, importance, leaderboard, metric_by_dataset
from dpo_core.sweeps.search import grid, suggest
from tests.support import open_page, recorded_sweep, toy_dataset


@pytest.fixture
def toy(store, workspace_with_tiny):
    """A 12-train / 4-eval dataset in a workspace whose builtin:tiny is prepared."""
    return toy_dataset(store, 12, 4)


def run_cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = cli(list(argv))
    return code, capsys.readouterr().out


def sweep_json(capsys, *argv) -> dict:
    code, out = run_cli(capsys, *argv, "--json")
    assert code == 0, out
    return json.loads(out)


# ---------------------------------------------------------------------------------------------
# Fast: config, suggestions, validation
# ---------------------------------------------------------------------------------------------
def test_sweep_recipes_load_and_validate():
    for name in ("tiny-random", "tiny-bayes", "noise"):
        cfg = validate_sweep(SweepConfig.load(recipe_path("sweeps", name)))
        assert cfg.budget >= 4
    noise = SweepConfig.load(recipe_path("sweeps", "noise"))
    assert {p["dataset"] for p in grid(noise)} == {"hellaswag-noise-0",
                                                          "hellaswag-noise-50"}


def test_random_suggestions_are_reproducible_and_inside_the_space():
    cfg = SweepConfig(base={"dataset": "toy"}, method="random", seed=3, parameters={
        "learning_rate": {"distribution": "loguniform", "min": 1e-4, "max": 1e-2},
        "lora.r": {"distribution": "int", "min": 2, "max": 8},
        "beta": [0.1, 0.2]})
    first = [suggest(cfg, [], n) for n in range(5)]
    assert first == [suggest(cfg, [], n) for n in range(5)]
    for p in first:
        assert 1e-4 <= p["learning_rate"] <= 1e-2 and 2 <= p["lora.r"] <= 8
        assert p["beta"] in (0.1, 0.2)
    run = run_config(cfg, first[0], 0)
    assert run.lora.r == first[0]["lora.r"] and run.precompute_ref_log_probs


def test_bayes_rebuilds_the_study_from_recorded_trials():
    cfg = SweepConfig(base={"dataset": "toy"}, method="bayes", goal="minimize", parameters={
        "beta": {"distribution": "uniform", "min": 0.0, "max": 1.0}})
    trials = [{"params": {"beta": b}, "status": "completed", "value": (b - 0.3) ** 2}
              for b in (0.05, 0.3, 0.9, 0.6)] + [{"params": {"beta": 0.5}, "status": "failed",
                                                   "value": None}]
    assert 0.0 <= suggest(cfg, trials, 5)["beta"] <= 1.0


@pytest.mark.parametrize("bad, match", [
    ({"method": "annealing"}, "method"), ({"goal": "best"}, "goal"), ({"budget": 0}, "budget"),
    ({"parameters": {"nope": [1]}}, "nope"),
    ({"parameters": {"beta": {"distribution": "uniform", "min": 1, "max": 0}}}, "min"),
    ({"method": "grid", "parameters": {"beta": {"distribution": "uniform", "min": 0, "max": 1}}},
     "grid"),
])
def test_bad_sweeps_are_refused_with_the_field(bad, match):
    from dpo_core.errors import ConfigError

    data = {"base": {"dataset": "toy"}, "parameters": {"beta": [0.1]}, **bad}
    with pytest.raises(ConfigError, match=match):
        validate_sweep(SweepConfig.from_dict(data))


# ---------------------------------------------------------------------------------------------
# Slow: real sweeps on the tiny model
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_random_sweep_from_the_cli_goes_on_after_a_failed_run(store, toy, capsys):
    out = sweep_json(capsys, "sweep", str(recipe_path("sweeps", "tiny-random")),
                     "--set", "dataset=toy")
    assert out["status"] == "completed"
    rows = out["leaderboard"]
    assert len(rows) == 6
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "out of memory" in failed[0]["error"].lower()
    done = [r for r in rows if r["status"] == "completed"]
    assert len(done) == 5
    for r in done:
        assert r["gain"] == pytest.approx(r["pair_accuracy"] - r["baseline_accuracy"])
        assert r["eval_loss"] is not None and r["runtime"] > 0
    assert list(out["baseline"]) == ["builtin:tiny|toy"]  # computed once, stored
    assert out["best"]["run_id"] == done[0]["run_id"]
    assert rows[-1]["status"] == "failed"  # failed runs listed last, with their error
    # the reference log-probs were computed once and reused by the other runs
    assert len(list((Path(os.environ["DPO_LAB_HOME"]) / "cache" / "ref_logps").glob("*"))) == 2
    code, text = run_cli(capsys, "sweeps", "list")
    assert code == 0 and "tiny-random" in text and "completed" in text


def test_a_zero_budget_is_refused_not_ignored(store, toy, capsys):
    assert cli(["sweep", str(recipe_path("sweeps", "tiny-random")), "--budget", "0"]) == 2
    assert "budget is 0" in capsys.readouterr().err


def test_a_sweep_on_an_unknown_target_is_refused_before_it_starts(store, toy, capsys):
    assert cli(["sweep", str(recipe_path("sweeps", "tiny-random")), "--target", "gpu-farm"]) == 2
    assert "'gpu-farm', which is not a cluster target" in capsys.readouterr().err
    assert store.scalar("SELECT COUNT(*) FROM sweeps") == 0


@pytest.mark.slow
def test_a_sweep_from_another_folder_whose_every_trial_failed_is_failed(store, toy, capsys,
                                                                       tmp_path, monkeypatch):
    """The README's sweep run from elsewhere: the base recipe path is resolved when the sweep is
    submitted (its job runs in its own folder); every trial failing makes the sweep fail."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "base.yaml").write_text(
        recipe_path("train", "smoke-tiny").read_text())
    sweep = tmp_path / "recipes" / "all-fail.yaml"
    sweep.write_text("name: all-fail\nbase: base.yaml\nmethod: grid\nbudget: 2\n"
                     "set: {dataset: toy, max_steps: 2, debug.oom_at_step: 1}\n"
                     "parameters: {beta: {values: [0.1, 0.2]}}\n")
    monkeypatch.chdir(tmp_path)
    code, out = run_cli(capsys, "sweep", "recipes/all-fail.yaml", "--json")
    result = json.loads(out)
    assert code == 1 and result["status"] == "failed"
    errors = [r["error"] for r in result["leaderboard"]]
    assert len(errors) == 2 and all("out of memory" in e for e in errors), errors


@pytest.mark.slow
def test_bayes_sweep_from_the_cli(store, toy, capsys):
    out = sweep_json(capsys, "sweep", str(recipe_path("sweeps", "tiny-bayes")),
                     "--set", "dataset=toy")
    rows = out["leaderboard"]
    assert out["status"] == "completed" and len(rows) == 4
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "max_prompt_length" in failed[0]["error"]
    assert failed[0]["run_id"] == ""  # refused before a run was started
    kept = [r for r in rows if r["status"] in ("completed", "pruned")]
    assert len(kept) == 3 and any(r["status"] == "completed" for r in kept)
    best = [r for r in rows if r["status"] == "completed"]
    assert [r["eval_loss"] for r in best] == sorted(r["eval_loss"] for r in best)


@pytest.mark.slow
def test_pause_resume_and_extend(store, toy, capsys):
    cfg = SweepConfig.load(recipe_path("sweeps", "tiny-random"))
    cfg.set |= {"dataset": "toy"}
    cfg.enqueue, cfg.budget = [], 2
    sweep_id = start_sweep(store, cfg)
    pause_sweep(store, sweep_id)
    paused = wait_sweep(store, sweep_id, poll=0.5)
    assert paused["status"] == "paused"
    assert len(paused["trials"]) <= 1  # the current run (if any) finished, nothing new started
    assert all(t["status"] != "running" for t in paused["trials"])
    out = sweep_json(capsys, "sweeps", "resume", sweep_id)
    assert out["status"] == "running"
    done = wait_sweep(store, sweep_id, poll=0.5)
    assert done["status"] == "completed" and len(done["trials"]) == 2
    out = sweep_json(capsys, "sweeps", "extend", sweep_id, "--budget", "3")
    assert out["budget"] == 3
    done = wait_sweep(store, sweep_id, poll=0.5)
    assert done["status"] == "completed" and len(done["trials"]) == 3
    assert [t["number"] for t in done["trials"]] == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# The Sweeps page (AppTest) on a recorded sweep
# ---------------------------------------------------------------------------------------------
def sweeps_page(sweep_id: str):
    return open_page("pages/sweeps.py", sweep_id=sweep_id)


def test_leaderboard_best_first_with_gain(store):
    sweep = get_sweep(store, recorded_sweep(store))
    rows = leaderboard(sweep)
    assert [r["number"] for r in rows] == [3, 2, 1, 0, 4]
    assert rows[0]["gain"] == pytest.approx(0.15) and rows[-1]["status"] == "failed"
    assert best_trial(sweep)["run_id"] == "run-3"
    imp = importance(sweep)
    assert set(imp) == {"learning_rate", "beta"}


def test_sweeps_page_shows_leaderboard_and_charts(workspace, store, monkeypatch):
    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    sweep_id = recorded_sweep(store)
    at = sweeps_page(sweep_id)
    frames = [d.value for d in at.dataframe]
    board = next(f for f in frames if "gain" in f.columns)
    assert list(board["name"])[:2] == ["recorded-3", "recorded-2"] and len(board) == 5
    assert {"learning_rate", "beta", "eval_loss", "eval_rewards/accuracies", "gain",
            "runtime"} <= set(board.columns)
    assert any("out of memory" in str(w.value) for w in at.warning)
    assert any("recorded-3" in str(s.value) for s in at.success)
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # parallel coordinates and parameter importance


def test_sweeps_page_charts_metric_by_dataset(workspace, store, monkeypatch):
    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    sweep_id = recorded_sweep(store, dataset_sweep=True)
    summary = metric_by_dataset(get_sweep(store, sweep_id))
    assert {s["dataset"] for s in summary} == {"noise-0", "noise-50"}
    at = sweeps_page(sweep_id)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("by dataset" in json.dumps(s.get("layout", {})) for s in specs)


@pytest.mark.slow
def test_noise_sweep_on_hellaswag_slices_charts_metric_by_noise(store, workspace_with_tiny,
                                                                 capsys, monkeypatch):
    from dpo_core.data.importer import import_pairs
    from tests.support import shared_data

    for name, file in (("hellaswag-noise-0", "dpo_000-1.json"),
                       ("hellaswag-noise-50", "dpo_050-1.json"), ("hellaswag-val", "val-1.json")):
        rows = json.loads(shared_data("hellaswag-noise", file).read_text())[:12]
        import_pairs(store, rows, dataset=name)
    out = sweep_json(capsys, "sweep", str(recipe_path("sweeps", "noise")), "--budget", "2",
                     "--set", "max_steps=2", "--set", "max_train_pairs=8")
    rows = out["leaderboard"]
    assert out["status"] == "completed"
    assert {r["dataset"] for r in rows} == {"hellaswag-noise-0", "hellaswag-noise-50"}
    assert all(r["status"] == "completed" and r["gain"] is not None for r in rows)
    assert list(out["baseline"]) == ["builtin:tiny|hellaswag-val"]  # one clean eval set
    summary = metric_by_dataset(get_sweep(store, out["id"]))
    assert len(summary) == 2
    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    at = sweeps_page(out["id"])
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("by dataset" in json.dumps(s.get("layout", {})) for s in specs)
