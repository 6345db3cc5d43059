"""Runs on the real one-node Slurm (`.ci/ensure-slurm`): submitted with sbatch, followed through
squeue/scontrol and the run folder's channel, cancelled with a checkpoint, killed and resumed
exactly, requeued at the time limit, and with two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dpo_core.cluster.targets import SlurmTarget, save_target
from dpo_core.errors import DPOLabError, JobError
from dpo_core.jobs import slurm_jobs
from dpo_core.jobs.channel import CHANNEL_FILE, read_events
from dpo_core.store import Store, forget_stores
from dpo_core.training import metrics, runs
from dpo_core.training.checkpoints import COMPLETE_MARKER
from tests.support import tiny_config, toy_dataset, wait_until
from tests.training.test_runs import adapter_tensors, loss_steps

pytestmark = pytest.mark.slurm


@pytest.fixture
def toy(store, workspace_with_tiny):
    return toy_dataset(store, 16, 4)


def slurm_of(store, run_id: str) -> dict:
    return runs.get_run(store, run_id)["result"].get("slurm") or {}


def worker_pid(run_dir: Path) -> int:
    """The job process's pid, from its `started` line in the channel."""
    events, _ = read_events(run_dir / CHANNEL_FILE, 0)
    return [e["pid"] for e in events if e["e"] == "started"][-1]


def statuses(store, run_id: str, until=("completed", "failed", "cancelled", "lost")) -> list:
    """The statuses a run passes through, each once, until a final one."""
    seen: list[str] = []

    def step():
        status = runs.get_run(store, run_id)["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in until

    wait_until(step, f"run {run_id} to end")
    return seen


def test_a_run_on_slurm_goes_queued_running_completed_with_its_metrics(store, toy,
                                                                      slurm_target):
    """Held by Slurm first (reason JobHeldUser), released, trained, every step stored once;
    the lab is restarted in the middle and keeps the true state."""
    save_target(store, SlurmTarget(name="held", partition="debug", time_limit="10",
                                   cpus_per_task=1, extra_sbatch=["--hold"]))
    run_id = runs.start_run(store, tiny_config(target="held", max_steps=4))
    run = runs.get_run(store, run_id)
    info = run["result"]["slurm"]
    assert run["status"] == "queued" and info["job_id"].isdigit()
    assert info["state"] == "PENDING" and info["reason"] == "JobHeldUser"
    assert run["host"] == "slurm:held" and (Path(run["run_dir"]) / "slurm.sh").is_file()
    subprocess.run(["scontrol", "release", info["job_id"]], check=True)
    wait_until(lambda: runs.get_run(store, run_id)["status"] == "running", "running")
    forget_stores()  # the lab restarts while the job runs
    store = Store(store.path)
    seen = statuses(store, run_id)
    run = runs.get_run(store, run_id)
    assert seen[-1] == "completed", run["error_text"]
    assert loss_steps(store, run_id) == [1, 2, 3, 4]
    assert metrics.read_samples(store, run_id)
    assert (Path(run["run_dir"]) / "final" / "adapter_model.safetensors").is_file()
    assert "slurm job" in (Path(run["run_dir"]) / "worker.log").read_text()


def test_the_lab_off_while_the_job_ran_catches_up(store, toy, slurm_target):
    run_id = runs.start_run(store, tiny_config(target="one", max_steps=3))
    job = slurm_of(store, run_id)["job_id"]
    wait_until(lambda: subprocess.run(["squeue", "-h", "-j", job], capture_output=True,
                                      text=True).stdout.strip() == "", "the Slurm job to end")
    forget_stores()
    store = Store(store.path)
    run = runs.get_run(store, run_id)
    assert run["status"] == "completed", run["error_text"]
    assert loss_steps(store, run_id) == [1, 2, 3]


def test_cancel_writes_a_checkpoint_and_resume_continues(store, toy, slurm_target):
    cfg = tiny_config(target="one", max_steps=40, save_steps=100, sample_prompts=0)
    cfg.debug.step_delay = 0.5
    run_id = runs.start_run(store, cfg)
    wait_until(lambda: runs.get_run(store, run_id)["step"] >= 2, "two steps")
    run = runs.cancel_run(store, run_id)
    assert run["status"] == "cancelled", run["error_text"]
    run_dir = Path(run["run_dir"])
    ckpts = [c for c in (run_dir / "checkpoints").glob("checkpoint-*")
             if (c / COMPLETE_MARKER).is_file()]
    assert ckpts, "the worker wrote a checkpoint when it was cancelled"
    stopped = int(ckpts[-1].name.split("-")[-1])
    assert 2 <= stopped < 40 and "requeueing" not in (run_dir / "worker.log").read_text()
    resumed = runs.resume_run(store, run_id)
    assert resumed["resumed_from"] == f"checkpoint-{stopped}"
    assert slurm_of(store, run_id)["job_id"] != run["result"]["slurm"]["job_id"]
    cfg_fast = runs.get_run(store, run_id)
    assert cfg_fast["status"] in ("queued", "running")
    assert statuses(store, run_id)[-1] == "completed", runs.get_run(store, run_id)["error_text"]
    assert loss_steps(store, run_id) == list(range(1, 41)), "each step once"


def test_a_killed_job_is_lost_with_slurms_reason_and_resumes_exactly(store, toy, slurm_target):
    import torch

    steps = 6
    ref_id = runs.start_run(store, tiny_config(max_steps=steps, sample_prompts=0))
    ref = runs.wait_run(store, ref_id, poll=0.3)
    assert ref["status"] == "completed", ref["error_text"]

    cfg = tiny_config(target="one", max_steps=steps, sample_prompts=0)
    cfg.debug.step_delay = 0.7
    run_id = runs.start_run(store, cfg)
    run_dir = Path(runs.get_run(store, run_id)["run_dir"])
    wait_until(lambda: (run_dir / "checkpoints/checkpoint-2" / COMPLETE_MARKER).is_file(),
               "checkpoint-2")
    os.kill(worker_pid(run_dir), signal.SIGKILL)  # the node's worker dies (a crash)
    started = time.monotonic()
    seen = statuses(store, run_id)
    assert time.monotonic() - started < 60, "the lab noticed within a minute"
    run = runs.get_run(store, run_id)
    assert seen[-1] == "failed", run["error_text"]
    assert run["error_text"].startswith(f"Slurm job {run['result']['slurm']['job_id']} ended "
                                        "FAILED")
    assert "exit code" in run["error_text"] and "without a final status" in run["error_text"]

    assert runs.resume_run(store, run_id)["resumed_from"].startswith("checkpoint-")
    assert statuses(store, run_id)[-1] == "completed", runs.get_run(store, run_id)["error_text"]
    assert loss_steps(store, run_id) == list(range(1, steps + 1)), "each step exactly once"
    a, b = adapter_tensors(ref["run_dir"]), adapter_tensors(run["run_dir"])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_a_job_cancelled_outside_the_lab_is_lost_with_slurms_reason(store, toy, slurm_target):
    cfg = tiny_config(target="one", max_steps=100, save_steps=100, sample_prompts=0)
    cfg.debug.step_delay = 0.5
    run_id = runs.start_run(store, cfg)
    wait_until(lambda: runs.get_run(store, run_id)["step"] >= 1, "a step")
    subprocess.run(["scancel", "-s", "KILL", slurm_of(store, run_id)["job_id"]], check=True)
    assert statuses(store, run_id)[-1] == "lost"
    run = runs.get_run(store, run_id)
    assert run["error_kind"] == "lost" and "ended CANCELLED" in run["error_text"]
    assert "Resume it from its last checkpoint" in run["error_text"]
    assert "requeueing" not in (Path(run["run_dir"]) / "worker.log").read_text()


def test_the_time_limit_checkpoints_requeues_and_finishes(store, toy, slurm_cluster):
    """A 2-minute limit with the warning 60 s before: the worker checkpoints, the script
    requeues, the next start resumes; every step is stored once."""
    save_target(store, SlurmTarget(name="short", partition="debug", time_limit="2",
                                   cpus_per_task=1, signal_s=60))
    cfg = tiny_config(target="short", max_steps=80, save_steps=1000, sample_prompts=0)
    cfg.debug.step_delay = 1.0
    run_id = runs.start_run(store, cfg)

    def poll() -> dict:
        run = runs.get_run(store, run_id)
        info = run["result"].get("slurm") or {}
        if run["result"].get("requeues") and info.get("reason") == "BeginTime":
            # Slurm holds a requeued job ~2 min (BeginTime): the admin lets it start now
            subprocess.run(["scontrol", "update", f"JobId={info['job_id']}", "StartTime=now"])
        return run

    wait_until(lambda: poll()["result"].get("requeues"), "a requeue at the time limit",
               limit=600)
    final = wait_until(lambda: (r := poll())["status"] in
                       ("completed", "failed", "lost", "cancelled") and r,
                       "the requeued run to finish", limit=900)
    assert final["status"] == "completed", final["error_text"]
    assert final["resumed_from"].startswith("checkpoint-")
    assert "requeueing" in (Path(final["run_dir"]) / "worker.log").read_text()
    assert loss_steps(store, run_id) == list(range(1, 81)), "each step once"


def test_two_processes_under_slurm(store, toy, slurm_cluster):
    save_target(store, SlurmTarget(name="two", partition="debug", time_limit="10",
                                   cpus_per_task=2))
    run_id = runs.start_run(store, tiny_config(target="two", num_processes=2, max_steps=2,
                                               sample_prompts=0))
    assert statuses(store, run_id)[-1] == "completed", runs.get_run(store, run_id)["error_text"]
    assert loss_steps(store, run_id) == [1, 2]
    epoch = store.scalar("SELECT value FROM metrics WHERE run_id=? AND step=1 AND key='epoch'",
                         (run_id,))
    assert epoch == pytest.approx(0.25)  # 16 pairs / (2 per device x 2 processes)
    log = (Path(runs.get_run(store, run_id)["run_dir"]) / "worker.log").read_text()
    assert "accelerate.commands.launch --num_processes 2 --num_machines 1 --machine_rank 0" \
        in log


class LabDied(BaseException):
    """The lab's process ending at one line (kill -9, a crash): nothing after it runs."""


def test_a_lab_that_dies_between_sbatch_and_the_row_finds_the_job_again(store, toy,
                                                                       slurm_target,
                                                                       monkeypatch):
    def die(*_args):
        raise LabDied

    monkeypatch.setattr(slurm_jobs, "_write_submitted", die)
    with pytest.raises(LabDied):
        runs.start_run(store, tiny_config(target="one", max_steps=2, sample_prompts=0))
    monkeypatch.undo()
    run_id = store.scalar("SELECT id FROM runs")  # the row was written before sbatch
    submitted = subprocess.run(["squeue", "-h", "-n", f"dpo-{run_id}", "-o", "%i"],
                               capture_output=True, text=True).stdout.split()
    assert len(submitted) == 1 and not slurm_of(store, run_id).get("job_id")
    # the lab starts again, after the claim on the submission has run out
    result = runs.get_run(store, run_id)["result"]
    result["slurm"]["submitting"] -= slurm_jobs.SUBMIT_CLAIM_S + 1
    with store.write() as conn:
        conn.execute("UPDATE runs SET result_json=? WHERE id=?", (json.dumps(result), run_id))
    assert statuses(store, run_id)[-1] == "completed", runs.get_run(store, run_id)["error_text"]
    assert slurm_of(store, run_id)["job_id"] == submitted[0]  # adopted, not submitted twice
    assert loss_steps(store, run_id) == [1, 2]


def test_a_sweep_sent_to_a_target_trains_every_trial_there(store, toy, slurm_target, capsys):
    from dpo_core.cli.main import main as cli
    from dpo_core.recipes import recipe_path

    assert cli(["sweep", str(recipe_path("sweeps", "tiny-random")), "--target", "one",
                "--set", "dataset=toy", "--budget", "2", "--json"]) == 0, capsys.readouterr()
    trials = store.query("SELECT run_id FROM sweep_trials ORDER BY number")
    hosts = [runs.get_run(store, t["run_id"])["host"] for t in trials]
    assert hosts == ["slurm:one", "slurm:one"]  # trial 0 fails on purpose, on the cluster too
    assert runs.get_run(store, trials[1]["run_id"])["status"] == "completed"


@pytest.mark.parametrize("target,words,fix", [
    (SlurmTarget(name="bad", partition="nosuch"), "Invalid partition name specified",
     "sinfo -s"),
    (SlurmTarget(name="bad", partition="debug", time_limit="600"),
     "Requested time limit is invalid", "time_limit"),
])
def test_slurm_refusing_leaves_no_run_and_quotes_slurm(store, toy, slurm_cluster, target,
                                                       words, fix):
    save_target(store, target)
    with pytest.raises(JobError) as err:
        runs.start_run(store, tiny_config(target="bad"))
    assert err.value.message.startswith("Slurm refused the job: ") and words in err.value.message
    assert fix in err.value.fix
    assert runs.list_runs(store) == [] and not any(Path(store.path).parent.joinpath(
        "runs").iterdir())


def test_sbatch_missing_leaves_no_run(store, toy, slurm_target, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(JobError) as err:
        runs.start_run(store, tiny_config(target="one"))
    assert "`sbatch` was not found on this machine" in err.value.message
    assert "slurm-client" in err.value.fix
    assert runs.list_runs(store) == [] and not any(Path(store.path).parent.joinpath(
        "runs").iterdir())


def test_an_unknown_target_or_an_unseen_folder_is_refused_before_submission(store, toy,
                                                                           slurm_cluster):
    with pytest.raises(DPOLabError) as err:
        runs.start_run(store, tiny_config(target="nowhere"))
    assert err.value.field == "target"
    save_target(store, SlurmTarget(name="far", shared_paths=["/cluster/scratch"]))
    with pytest.raises(DPOLabError) as err:
        runs.start_run(store, tiny_config(target="far"))
    assert "is not on a path the cluster 'far' sees" in err.value.message
    assert runs.list_runs(store) == [] and not any(Path(store.path).parent.joinpath(
        "runs").iterdir())
    assert os.environ.get("DPO_LAB_HOME")  # the fix names it
    assert slurm_jobs.HOST_PREFIX == "slurm:"


def test_the_estimate_becomes_the_request_and_says_what_cannot_fit(store, slurm_cluster):
    save_target(store, SlurmTarget(name="s", partition="debug", time_limit="30",
                                   mem_per_task="1G"))
    asked = slurm_jobs.request(store, "s", 3600, 0.5)
    assert asked["problems"] == []
    assert "time limit 30 (the run needs ~77 min with margin)" in asked["text"]
    assert "it will checkpoint and requeue about 2 time(s)" in asked["text"]
    save_target(store, SlurmTarget(name="s", partition="debug", time_limit="02:00:00"))
    asked = slurm_jobs.request(store, "s", 60, 1000.0)
    assert asked["problems"] == [
        "the time limit 02:00:00 is over partition debug's 60 min",
        f"~1000.0 GB is more than a node of debug has "
        f"({asked['text'].split('has (')[1].split(' GB')[0]} GB)"]
    assert "Cannot fit:" in asked["text"]
