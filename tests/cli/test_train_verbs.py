"""The real entry point as a subprocess: `train` a recipe, `runs list|show|export`."""

from __future__ import annotations

import json

import pytest

from dpo_core.data.demo_datasets import seed_workspace
from tests.support import cli


@pytest.mark.slow
def test_smoke_recipe_trains_from_the_cli(store, workspace_with_tiny, tmp_path):
    seed_workspace(store)
    home = workspace_with_tiny.home
    done = cli(home, "train", "recipes/train/smoke-tiny.yaml", "--set", "max_steps=2", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "completed" and run["step"] == 2
    run_dir = home / "runs" / run["id"]
    assert {"config.yaml", "pairs.train.jsonl", "pairs.eval.jsonl", "prompt_format.json",
            "model.json", "job.json", "worker.log", "final", "checkpoints"} <= \
        {p.name for p in run_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json",
            "prompt_format.json", "dpo_lab_model.json"} <= \
        {p.name for p in (run_dir / "final").iterdir()}
    assert (run_dir / "checkpoints/checkpoint-2/COMPLETE.json").is_file()

    listed = json.loads(cli(home, "runs", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [run["id"]]
    shown = json.loads(cli(home, "runs", "show", run["id"], "--json").stdout)
    assert "loss" in shown["last_metrics"]

    out = tmp_path / "merged"
    exported = cli(home, "runs", "export", run["id"], "--merge", "--out", str(out), "--json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["merged"] is True
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md",
            "prompt_format.json"} <= {p.name for p in out.iterdir()}
    assert "rewards" in (out / "README.md").read_text() or "loss" in (out / "README.md").read_text()


@pytest.mark.slow
def test_cli_errors_are_one_line_exit_2(workspace, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("beta: -1\ndataset: nope\n")
    done = cli(workspace.home, "train", str(bad), "--detach")
    assert done.returncode == 2
    assert done.stderr.startswith("error: beta is -1") and "Fix:" in done.stderr
    done = cli(workspace.home, "train", str(bad), "--set", "lr=1")
    assert done.returncode == 2 and "Unknown config field 'lr'" in done.stderr
    done = cli(workspace.home, "runs", "show", "nope")
    assert done.returncode == 2 and "No run 'nope'" in done.stderr


@pytest.mark.slow
def test_cpu_quick_demo_recipe_completes_on_the_default_model(store, workspace_with_default):
    """The shipped recipe as it is (its model, data, LoRA, lengths, eval and samples), followed
    to the end; only its 20 steps are cut to 4 (the README's journey runs it detached too)."""
    seed_workspace(store)
    done = cli(workspace_with_default.home, "train", "recipes/train/cpu-quick-demo.yaml",
               "--set", "max_steps=4", "--set", "eval_steps=4", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout)
    assert run["status"] == "completed"
    losses = [m["value"] for m in store.query(
        "SELECT value FROM metrics WHERE run_id=? AND key='loss' ORDER BY step", (run["id"],))]
    assert len(losses) == 2  # logged every 2 steps
    assert store.scalar("SELECT COUNT(*) FROM metrics WHERE run_id=? AND key='eval_loss'",
                        (run["id"],)) == 1


@pytest.mark.slow
def test_detached_run_outlives_its_launcher(store, workspace_with_tiny):
    """The launching process exits at once (like a killed app); the run still runs and finishes."""
    from dpo_core.jobs import lifecycle
    from dpo_core.training import runs

    seed_workspace(store)
    done = cli(workspace_with_tiny.home, "train", "recipes/train/smoke-tiny.yaml", "--detach",
               "--set", "max_steps=2", "--set", "sample_prompts=0")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    lifecycle.refresh(store)
    assert runs.get_run(store, run_id)["status"] in ("running", "completed")
    run = runs.wait_run(store, run_id, poll=0.3)
    assert run["status"] == "completed", run["error_text"]


def test_explain_prints_the_plan_without_launching(store, workspace_with_tiny, tmp_path):
    seed_workspace(store)
    home = workspace_with_tiny.home
    config = tmp_path / "run.yaml"
    config.write_text("model: builtin:tiny\ndataset: demo-childes\nmax_steps: 2\n")
    done = cli(home, "train", str(config), "--explain")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("max_length", "gradient_checkpointing", "batch_order",
                 "precompute_ref_log_probs", "attn_implementation", "padding_free"):
        assert any(line.startswith(f"{name}: ") and " - " in line for line in lines), name
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())
    trl = json.loads(cli(home, "train", str(config), "--explain", "--json",
                         "--execution", "trl-defaults").stdout)
    assert trl["execution"] == "trl-defaults"
    values = {k: c["value"] for k, c in trl["choices"].items()}
    assert (values["max_length"], values["gradient_checkpointing"], values["batch_order"],
            values["precompute_ref_log_probs"]) == (1024, True, "random", False)


@pytest.mark.slow
def test_runs_show_prints_the_plan_the_run_was_launched_with(store, workspace_with_tiny):
    seed_workspace(store)
    home = workspace_with_tiny.home
    done = cli(home, "train", "recipes/train/smoke-tiny.yaml", "--set", "max_steps=1",
               "--set", "sample_prompts=0", "--detach", "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["id"]
    shown = cli(home, "runs", "show", run_id)
    assert "execution: lab" in shown.stdout
    assert "max_length: 128 (set in the config) - kept as set" in shown.stdout
    assert "gradient_checkpointing: False - " in shown.stdout
    cli(home, "runs", "cancel", run_id)


def test_training_on_identical_pairs_warns_with_the_fix(store, workspace_with_tiny):
    """Pairs whose replies are the same teach nothing: `train` says so (and how to drop them)."""
    from dpo_core.data.datasets import Pair, create_dataset, insert_pairs
    from dpo_core.training import runs

    ds = create_dataset(store, "same-replies")
    insert_pairs(store, ds.id, [Pair(f"Question {i}?", f"Answer {i}.",
                                     f"answer {i}" if i < 3 else f"No {i}.") for i in range(12)])
    done = cli(workspace_with_tiny.home, "train", "recipes/train/smoke-tiny.yaml", "--detach",
               "--set", "dataset=same-replies", "--set", "max_steps=1", "--set", "sample_prompts=0")
    assert done.returncode == 0, done.stderr
    assert "3 pair(s) of same-replies have the same chosen and rejected reply" in done.stderr
    assert "data filter same-replies --check normalized_identical" in done.stderr
    runs.wait_run(store, done.stdout.strip(), poll=0.3)
