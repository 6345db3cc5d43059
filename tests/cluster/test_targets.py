"""Cluster targets, the batch script and the per-node launch commands, pinned exactly."""

from __future__ import annotations

import pytest

from dpo_core.cluster import launch, slurm
from dpo_core.cluster.targets import (
    SlurmTarget,
    check_visible,
    dump_targets,
    get_target,
    list_targets,
    load_targets,
    remove_target,
    save_target,
    target_names,
)
from dpo_core.errors import ConfigError


def test_targets_are_kept_listed_replaced_and_removed(memory_store, tmp_path):
    assert target_names(memory_store) == ["local"] and get_target(memory_store, "local") is None
    save_target(memory_store, SlurmTarget(name="gpu", partition="a100", gpus_per_node=4))
    save_target(memory_store, SlurmTarget(name="cpu", partition="short"))
    save_target(memory_store, SlurmTarget(name="gpu", partition="h100", gpus_per_node=8))
    assert target_names(memory_store) == ["local", "cpu", "gpu"]
    assert get_target(memory_store, "gpu").partition == "h100"
    path = tmp_path / "targets.yaml"
    path.write_text(dump_targets(memory_store))
    assert load_targets(path) == list_targets(memory_store)
    remove_target(memory_store, "cpu")
    with pytest.raises(ConfigError) as err:
        get_target(memory_store, "cpu")
    assert err.value.field == "target" and "Use one of: local, gpu" in err.value.fix


@pytest.mark.parametrize("field,value,fix", [
    ("name", "local", "not 'local'"),
    ("time_limit", "2 hours", "HH:MM:SS"),
    ("nodes", 0, "Use 1 or more."),
    ("mem_per_task", "lots", "16G"),
    ("signal_s", 5, "at least 10 seconds"),
    ("extra_sbatch", ["exclusive"], "--constraint=a100"),
])
def test_a_bad_target_names_its_field(field, value, fix):
    with pytest.raises(ConfigError) as err:
        SlurmTarget(**{"name": "t", field: value})
    assert err.value.field == field and fix in err.value.fix


@pytest.mark.parametrize("limit,seconds", [("90", 5400), ("1:30", 90), ("01:30:00", 5400),
                                           ("1-02", 93600), ("2-00:30:00", 174600)])
def test_time_limits_in_slurms_formats(limit, seconds):
    assert SlurmTarget(name="t", time_limit=limit).time_limit_s() == seconds


def test_a_run_folder_the_cluster_cannot_see_is_refused_with_the_fix(tmp_path):
    target = SlurmTarget(name="t", shared_paths=[str(tmp_path / "shared")])
    check_visible(target, tmp_path / "shared" / "lab" / "runs" / "r1")
    check_visible(SlurmTarget(name="t"), "/anywhere")  # no shared_paths: a login node
    with pytest.raises(ConfigError) as err:
        check_visible(target, tmp_path / "laptop" / "runs" / "r1")
    assert "is not on a path the cluster 't' sees" in err.value.message
    assert "DPO_LAB_HOME" in err.value.fix and "shared_paths" in err.value.fix


def test_the_batch_script_asks_for_what_the_target_says(tmp_path):
    target = SlurmTarget(name="gpu", partition="a100", account="lab", qos="normal",
                         time_limit="04:00:00", gpus_per_node=4, nodes=2, cpus_per_task=8,
                         mem_per_task="64G", extra_sbatch=["#SBATCH --exclusive",
                                                           "--constraint=nvlink"],
                         python="/opt/envs/dpo", signal_s=300)
    assert slurm.directives(target, "r1", tmp_path) == [
        "--job-name=dpo-r1", f"--output={tmp_path / 'worker.log'}", "--open-mode=append",
        f"--chdir={tmp_path}", "--time=04:00:00", "--nodes=2", "--ntasks-per-node=1",
        "--signal=B:TERM@300", "--requeue", "--partition=a100", "--account=lab",
        "--qos=normal", "--cpus-per-task=8", "--mem=64G", "--gres=gpu:4", "--exclusive",
        "--constraint=nvlink"]
    script = slurm.batch_script(target, "r1", tmp_path)
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=dpo-r1\n")
    assert "srun --kill-on-bad-exit=1 --nodes=2 --ntasks-per-node=1 " \
           '--cpus-per-task="$SLURM_CPUS_PER_TASK"' in script
    assert "/opt/envs/dpo/bin/python -m dpo_core.cluster.launch" in script
    assert "trap 'stopping=1; scancel --signal=TERM \"$SLURM_JOB_ID\"' TERM" in script
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script and "/CANCEL" in script


def test_slurms_refusals_get_a_fix():
    words = slurm.slurm_words("sbatch: error: Batch job submission failed: Invalid partition "
                              "name specified\n")
    assert words == "Batch job submission failed: Invalid partition name specified"
    assert "sinfo -s" in slurm.fix_for(words)
    assert "time_limit" in slurm.fix_for("Requested time limit is invalid (missing or exceeds "
                                         "some limit)")


JOB_ENV = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2",
           "DPO_LAB_MAIN_ADDR": "node-a"}


def test_one_process_on_one_node_runs_the_job_itself():
    assert launch.launch_command({"processes": 1}, "/runs/r1", {"SLURM_JOB_ID": "7"},
                                 "/env/bin/python") == [
        "/env/bin/python", "-m", "dpo_core.jobs.runner", "/runs/r1"]


@pytest.mark.parametrize("rank", [0, 1])
def test_two_nodes_launch_with_their_rank_the_main_address_and_one_port(rank):
    """What rank 0 and rank 1 run on a two-node job (4 processes in all), exactly."""
    env = {**JOB_ENV, "SLURM_NODEID": str(rank)}
    assert launch.launch_command({"processes": 4}, "/runs/r1", env, "/env/bin/python") == [
        "/env/bin/python", "-m", "accelerate.commands.launch", "--num_processes", "4",
        "--num_machines", "2", "--machine_rank", str(rank), "--main_process_ip", "node-a",
        "--main_process_port", "24242", "--multi_gpu",
        "-m", "dpo_core.jobs.runner", "/runs/r1"]


def test_an_accelerate_config_replaces_multi_gpu(tmp_path):
    cfg = tmp_path / "fsdp.yaml"
    cmd = launch.launch_command({"processes": 2, "accelerate_config": str(cfg)}, "/r",
                                {"SLURM_JOB_ID": "1", "SLURM_NODEID": "0"}, "py")
    assert cmd[-5:] == ["--config_file", str(cfg), "-m", "dpo_core.jobs.runner", "/r"]
    assert "--multi_gpu" not in cmd


def test_the_main_address_is_the_first_node_of_the_allocation(monkeypatch):
    class Done:
        returncode, stdout = 0, "gpu-07\ngpu-08\n"

    monkeypatch.setattr(launch.subprocess, "run", lambda *a, **k: Done())
    assert launch.main_address({"SLURM_JOB_NODELIST": "gpu-[07-08]"}) == "gpu-07"
    assert launch.main_address({}) == "127.0.0.1"


def test_the_targets_verbs_add_list_export_import_remove(workspace, capsys, tmp_path):
    from dpo_core.cli.main import main

    assert main(["targets", "add", "gpu", "--partition", "a100", "--gpus-per-node", "2",
                 "--time-limit", "04:00:00", "--extra-sbatch=--exclusive",
                 "--shared-paths", "/shared"]) == 0
    assert main(["targets", "list"]) == 0
    out = capsys.readouterr().out
    assert "local  this machine" in out and "gpu  slurm partition=a100 time=04:00:00" in out
    assert main(["targets", "export"]) == 0
    exported = capsys.readouterr().out
    assert "extra_sbatch:\n  - --exclusive" in exported
    path = tmp_path / "targets.yaml"
    path.write_text(exported.replace("name: gpu", "name: gpu2"))
    assert main(["targets", "import", str(path)]) == 0
    assert main(["targets", "remove", "gpu"]) == 0
    capsys.readouterr()
    assert main(["targets", "list", "--json"]) == 0
    assert '"name": "gpu2"' in capsys.readouterr().out
    assert main(["targets", "add", "bad", "--nodes", "0"]) == 2
    assert "nodes is 0" in capsys.readouterr().err
