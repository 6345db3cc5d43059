"""Training runs end to end on the tiny model: the worker process, the store, stop, crash, resume."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from dpo_core.jobs import lifecycle, processes, rows
from dpo_core.training import metrics, runs
from dpo_core.training.checkpoints import COMPLETE_MARKER, last_complete_checkpoint
from dpo_core.training.config import RunConfig
from tests.support import tiny_config, toy_dataset, wait_until


@pytest.fixture
def toy(store, workspace_with_tiny):
    """A 16-train / 4-eval dataset in a workspace whose builtin:tiny is prepared."""
    return toy_dataset(store, 16, 4)


def loss_steps(store, run_id: str) -> list[int]:
    return [r["step"] for r in store.query(
        "SELECT step FROM metrics WHERE run_id=? AND key='loss' ORDER BY step", (run_id,))]


def adapter_tensors(run_dir: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / "final" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_lora_run_trains_adapter_and_keeps_base(store, toy, workspace):
    import torch

    from dpo_core.models import resolve_model

    run_id = runs.start_run(store, tiny_config(eval_steps=2, sample_every=2))
    run = runs.wait_run(store, run_id, poll=0.3)
    assert run["status"] == "completed", run["error_text"]
    assert loss_steps(store, run_id) == [1, 2, 3]
    keys = {m["key"] for m in metrics.read_metrics(store, run_id)}
    assert {"loss", "rewards/margins", "rewards/accuracies", "logps/chosen", "grad_norm",
            "learning_rate", "tokens/s", "eval_loss", "eval_rewards/accuracies"} <= keys
    assert {m["split"] for m in metrics.read_metrics(store, run_id) if m["key"] == "eval_loss"} \
        == {"eval"}
    assert metrics.read_samples(store, run_id), "sample generations were written"
    assert run["step"] == 3 and run["total_steps"] == 3

    trained = resolve_model(f"run:{run_id}")
    base = resolve_model("builtin:tiny")
    lora_b = [p for n, p in trained.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "LoRA B starts at 0 and must move"
    base_sd = base.model.state_dict()
    for name, tensor in trained.model.get_base_model().state_dict().items():
        if "lora_" in name:
            continue
        clean = name.replace("base_layer.", "")
        assert torch.equal(tensor, base_sd[clean]), f"base weight {clean} changed"
    final = Path(run["run_dir"]) / "final"
    assert json.loads((final / "dpo_lab_model.json").read_text())["kind"] == "lora"
    assert (final / "prompt_format.json").is_file() and (final / "tokenizer.json").is_file()


@pytest.mark.slow
def test_full_run_changes_weights(store, toy):
    import torch
    from safetensors.torch import load_file

    from dpo_core.models import resolve_path

    run_id = runs.start_run(store, tiny_config(method="full", max_steps=2, sample_prompts=0))
    run = runs.wait_run(store, run_id, poll=0.3)
    assert run["status"] == "completed", run["error_text"]
    before = load_file(str(Path(resolve_path("builtin:tiny")) / "model.safetensors"))
    after = load_file(str(Path(run["run_dir"]) / "final" / "model.safetensors"))
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert changed, "full fine-tuning must change the weights"


@pytest.mark.slow
def test_cancel_writes_checkpoint_and_leaves_no_process(store, toy):
    cfg = tiny_config(max_steps=200, save_steps=100, sample_prompts=0)
    cfg.debug.step_delay = 0.3
    run_id = runs.start_run(store, cfg)
    wait_until(lambda: runs.get_run(store, run_id)["step"] >= 1, "the first step")
    pgid = runs.get_run(store, run_id)["pgid"]
    run = runs.cancel_run(store, run_id)
    assert run["status"] == "cancelled"
    ckpt = last_complete_checkpoint(run["run_dir"])
    assert ckpt is not None and (ckpt / COMPLETE_MARKER).is_file()
    assert (ckpt / "optimizer.pt").is_file() and (ckpt / "adapter_model.safetensors").is_file()
    assert processes.group_members(pgid) == []
    assert not (Path(run["run_dir"]) / "final").exists()


def _kill_after_checkpoint(store, cfg: RunConfig, step: int) -> str:
    run_id = runs.start_run(store, cfg)
    run_dir = Path(runs.get_run(store, run_id)["run_dir"])
    wait_until(lambda: (run_dir / f"checkpoints/checkpoint-{step}" / COMPLETE_MARKER).is_file(),
               f"checkpoint-{step}")
    run = runs.get_run(store, run_id)
    os.killpg(run["pgid"], signal.SIGKILL)
    wait_until(lambda: not processes.group_members(run["pgid"]), "the killed group to go")
    lifecycle.refresh(store)
    assert runs.get_run(store, run_id)["status"] == "lost"
    return run_id


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(store, toy):
    import torch

    steps = 6
    ref_id = runs.start_run(store, tiny_config(max_steps=steps, sample_prompts=0))
    ref = runs.wait_run(store, ref_id, poll=0.3)
    assert ref["status"] == "completed", ref["error_text"]

    cfg = tiny_config(max_steps=steps, sample_prompts=0)
    cfg.debug.step_delay = 0.7
    killed = _kill_after_checkpoint(store, cfg, 2)
    assert runs.resume_run(store, killed)["resumed_from"].startswith("checkpoint-")
    run = runs.wait_run(store, killed, poll=0.3)
    assert run["status"] == "completed", run["error_text"]
    assert loss_steps(store, killed) == list(range(1, steps + 1)), "each step exactly once"
    a, b = adapter_tensors(ref["run_dir"]), adapter_tensors(run["run_dir"])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    ref_loss = {r["step"]: r["value"] for r in metrics.read_metrics(store, ref_id)
                if r["key"] == "loss"}
    got_loss = {r["step"]: r["value"] for r in metrics.read_metrics(store, killed)
                if r["key"] == "loss"}
    assert got_loss == pytest.approx(ref_loss, abs=1e-5)

    # the same crash with the optimizer state removed must give a different adapter
    broken = _kill_after_checkpoint(store, cfg, 2)
    (Path(runs.get_run(store, broken)["run_dir"]) / "checkpoints/checkpoint-2/optimizer.pt").unlink()
    runs.resume_run(store, broken)
    run = runs.wait_run(store, broken, poll=0.3)
    assert run["status"] == "completed", run["error_text"]
    c = adapter_tensors(run["run_dir"])
    assert any(not torch.allclose(a[k], c[k], atol=1e-6) for k in a)


@pytest.mark.slow
def test_failures_have_kinds_and_do_not_block_the_queue(store, toy, workspace, tiny_model_dir):
    import shutil

    broken = runs.start_run(store, tiny_config(name="broken-config"), launch=False)
    (Path(runs.get_run(store, broken)["run_dir"]) / "config.yaml").write_text("lora: [\n")

    gone = workspace.home / "gone-model"
    shutil.copytree(tiny_model_dir, gone)
    missing = runs.start_run(store, tiny_config(name="missing-model", model=str(gone)),
                             launch=False)
    shutil.rmtree(gone)

    oom_cfg = tiny_config(name="oom")
    oom_cfg.debug.oom_at_step = 1
    oom = runs.start_run(store, oom_cfg, launch=False)
    good = runs.start_run(store, tiny_config(name="good", max_steps=1, sample_prompts=0),
                          launch=False)
    assert {r["status"] for r in runs.list_runs(store)} == {"queued"}

    lifecycle.schedule(store)  # one at a time on CPU; each failing worker starts the next one
    assert len([r for r in runs.list_runs(store) if r["status"] == "running"]) <= 1
    run = runs.wait_run(store, good, poll=0.3)
    assert run["status"] == "completed", run["error_text"]
    kinds = {rid: (runs.get_run(store, rid)["status"], runs.get_run(store, rid)["error_kind"])
             for rid in (broken, missing, oom)}
    assert kinds == {broken: ("failed", "config"), missing: ("failed", "model"),
                     oom: ("failed", "oom")}
    assert "config.yaml" in runs.get_run(store, broken)["error_text"]
    assert "out of memory" in runs.get_run(store, oom)["error_text"]


def test_metrics_read_incrementally_and_delete_run(store, toy):
    from dpo_core.training.metrics import write_metrics

    run_id = runs.start_run(store, tiny_config(), launch=False)
    write_metrics(store, run_id, 1, {"loss": 0.7, "rewards/margins": 0.0, "note": "x"})
    first = metrics.read_metrics(store, run_id)
    assert {m["key"] for m in first} == {"loss", "rewards/margins"}
    write_metrics(store, run_id, 2, {"loss": 0.6})
    write_metrics(store, run_id, 1, {"loss": 0.65})  # a rewrite shows up as new
    later = metrics.read_metrics(store, run_id, after_id=max(m["id"] for m in first))
    assert [(m["step"], m["value"]) for m in later] == [(2, 0.6), (1, 0.65)]
    assert store.scalar("SELECT COUNT(*) FROM metrics WHERE run_id=? AND key='loss'",
                        (run_id,)) == 2
    runs.cancel_run(store, run_id)
    run_dir = runs.get_run(store, run_id)["run_dir"]
    runs.delete_run(store, run_id)
    assert not Path(run_dir).exists() and not runs.list_runs(store)


@pytest.mark.slow
def test_accelerate_launch_with_two_cpu_processes(store, toy):
    """DDP over gloo with two CPU processes: trains, and only the main process writes metrics."""
    run_id = runs.start_run(store, tiny_config(num_processes=2, max_steps=2, sample_prompts=0))
    assert "accelerate.commands.launch" in lifecycle.job_command(
        Path(runs.get_run(store, run_id)["run_dir"]))
    run = runs.wait_run(store, run_id, poll=0.3)
    log = lifecycle.log_tail(run["run_dir"], 200)
    assert run["status"] == "completed", run["error_text"] or log
    assert loss_steps(store, run_id) == [1, 2]
    epoch = store.scalar("SELECT value FROM metrics WHERE run_id=? AND step=1 AND key='epoch'",
                         (run_id,))
    assert epoch == pytest.approx(0.25)  # 16 pairs / (2 per device x 2 processes) = 4 steps/epoch
    lora_b = [v for k, v in adapter_tensors(run["run_dir"]).items() if "lora_B" in k]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)


def test_frozen_worker_is_flagged_not_lost_and_recovers(store, toy, monkeypatch, capsys):
    """A worker that stops beating (here: SIGSTOP) is shown as stalled, never silently 'lost'."""
    from dpo_core.cli.main import main

    monkeypatch.setattr(rows, "STALL_AFTER_S", 6.0)  # beats come every 5 s
    cfg = tiny_config(max_steps=200, save_steps=100, sample_prompts=0)
    cfg.debug.step_delay = 0.3
    run_id = runs.start_run(store, cfg)
    wait_until(lambda: runs.get_run(store, run_id)["step"] >= 1, "the first step")
    pgid = runs.get_run(store, run_id)["pgid"]
    os.killpg(pgid, signal.SIGSTOP)
    try:
        run = wait_until(lambda: (r := runs.get_run(store, run_id))["warning"] and r,
                         "the stall warning")
        lifecycle.schedule(store)  # the process is alive: it must stay 'running', not become 'lost'
        assert runs.get_run(store, run_id)["status"] == "running"
        assert "No heartbeat from the job's process" in run["warning"] and "Cancel" in run["warning"]
        assert main(["runs", "show", run_id]) == 0
        assert "warning: No heartbeat" in capsys.readouterr().out
    finally:
        os.killpg(pgid, signal.SIGCONT)
    wait_until(lambda: not runs.get_run(store, run_id)["warning"], "the heartbeat to come back")
    run = runs.cancel_run(store, run_id)
    assert run["status"] == "cancelled" and processes.group_members(pgid) == []


def test_a_run_folder_from_before_one_job_lifecycle_resumes(store, toy):
    """Run folders written by earlier versions have no job.json: resume writes it."""
    from dpo_core.jobs.lifecycle import JOB_FILE

    run_id = runs.start_run(store, tiny_config(), launch=False)
    run_dir = Path(runs.get_run(store, run_id)["run_dir"])
    (run_dir / JOB_FILE).unlink()
    (run_dir / "run.json").write_text(json.dumps({"id": run_id, "db": store.path}))
    runs.cancel_run(store, run_id)
    runs.resume_run(store, run_id, launch=False)
    job = json.loads((run_dir / JOB_FILE).read_text())
    assert (job["id"], job["kind"], job["target"]) == (run_id, "train", runs.TARGET)
    assert runs.get_run(store, run_id)["status"] == "queued"
