"""The one job lifecycle: a real `python -m dpo_core.jobs.runner` child per test."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from dpo_core.cli.main import main as cli_main
from dpo_core.errors import DataError, NotFoundError
from dpo_core.jobs import rows
from dpo_core.jobs.lifecycle import (
    JOB_FILE,
    LOG_FILE,
    cancel_job,
    job_status,
    list_jobs,
    start_job,
    wait_job,
)

HERE = "tests.jobs.test_lifecycle"  # targets are f"{HERE}:<function>"


# -- targets the child imports as `tests.jobs.test_lifecycle:<name>` -----------------------------
def count_target(config: dict, ctx) -> dict:
    for i in range(config["n"]):
        if ctx.cancelled():
            break
        ctx.progress(i + 1, config["n"], kept=i + 1)
        time.sleep(config.get("sleep", 0))
    return {"answer": 42}


def failing_target(config: dict, ctx) -> None:
    ctx.progress(1, 3)
    raise DataError("Row 3 of pairs.csv has no 'chosen'.", "Fill it in or drop the row.")


@pytest.fixture
def jobs_env(store):
    """The store of a fresh workspace (the child imports this module from the repo root)."""
    return store


def wait_for(predicate, what: str):
    for _ in range(600):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def test_job_completes_with_progress_and_result(jobs_env, workspace):
    job_id = start_job(jobs_env, "test", {"n": 3}, f"{HERE}:count_target", name="counting")
    job = wait_job(jobs_env, job_id)
    assert job["status"] == "completed", job["error_text"]
    assert (job["step"], job["total_steps"]) == (3, 3)
    assert job["result"] == {"kept": 3, "answer": 42}
    assert job["kind"] == "test" and job["name"] == "counting" and job["finished"]
    run_dir = workspace.runs / job_id
    assert json.loads((run_dir / JOB_FILE).read_text())["target"] == f"{HERE}:count_target"
    assert (run_dir / LOG_FILE).is_file()
    assert [j["id"] for j in list_jobs(jobs_env)] == [job_id]


def test_failed_job_records_error_kind_and_log_tail(jobs_env):
    job = wait_job(jobs_env, start_job(jobs_env, "test", {}, f"{HERE}:failing_target"))
    assert job["status"] == "failed"
    assert job["error_kind"] == "data"
    assert "Row 3 of pairs.csv has no 'chosen'." in job["error_text"]
    assert "Traceback" in job["error_text"]  # the log tail comes with it
    assert job["step"] == 1


def test_missing_target_fails_as_config_error(jobs_env):
    job = wait_job(jobs_env, start_job(jobs_env, "test", {}, f"{HERE}:no_such_function"))
    assert job["status"] == "failed" and job["error_kind"] == "config"


def test_cancel_stops_between_steps_and_keeps_progress(jobs_env):
    job_id = start_job(jobs_env, "test", {"n": 1000, "sleep": 0.05}, f"{HERE}:count_target")
    wait_for(lambda: job_status(jobs_env, job_id)["step"] >= 2, "two steps done")
    job = cancel_job(jobs_env, job_id)
    assert job["status"] == "cancelled"
    assert 2 <= job["step"] < 1000
    assert job["result"]["kept"] == job["step"]


def test_killed_job_is_lost_not_running(jobs_env):
    job_id = start_job(jobs_env, "test", {"n": 1000, "sleep": 0.05}, f"{HERE}:count_target")
    wait_for(lambda: job_status(jobs_env, job_id)["step"] >= 1, "a step done")
    os.killpg(job_status(jobs_env, job_id)["pgid"], signal.SIGKILL)
    wait_for(lambda: job_status(jobs_env, job_id)["status"] == "lost", "lost detected")
    job = job_status(jobs_env, job_id)
    assert job["error_kind"] == "lost" and "gone" in job["error_text"]


def test_recycled_pid_is_lost_and_a_silent_live_job_is_stalled(jobs_env, monkeypatch):
    """One rule for every kind: a gone or recycled pid is lost; a live process that stopped
    beating stays running with a warning (training runs and other jobs alike)."""
    job_id = start_job(jobs_env, "test", {"n": 1000, "sleep": 0.05}, f"{HERE}:count_target")
    wait_for(lambda: job_status(jobs_env, job_id)["step"] >= 1, "a step done")
    with jobs_env.write() as conn:  # same pid, other start time: another process now
        conn.execute("UPDATE runs SET proc_start=proc_start+1 WHERE id=?", (job_id,))
    assert job_status(jobs_env, job_id)["status"] == "lost"
    job_id = start_job(jobs_env, "test", {"n": 1000, "sleep": 0.05}, f"{HERE}:count_target")
    wait_for(lambda: job_status(jobs_env, job_id)["step"] >= 1, "a step done")
    monkeypatch.setattr(rows, "STALL_AFTER_S", 0.0)
    job = job_status(jobs_env, job_id)
    assert job["status"] == "running" and "No heartbeat" in job["warning"]
    for job in list_jobs(jobs_env):  # clean up the children still running
        os.killpg(job["pgid"], signal.SIGKILL)


def test_jobs_cli_list_show_cancel(jobs_env, capsys):
    job_id = start_job(jobs_env, "test", {"n": 1000, "sleep": 0.05}, f"{HERE}:count_target")
    assert cli_main(["jobs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == job_id
    assert cli_main(["jobs", "cancel", job_id[:-1], "--json"]) == 0  # a prefix is enough
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert cli_main(["jobs", "show", job_id]) == 0
    assert "cancelled" in capsys.readouterr().out
    with pytest.raises(NotFoundError):
        job_status(jobs_env, "nope")


def test_an_ambiguous_id_prefix_is_refused_not_guessed(jobs_env, workspace, capsys):
    """`runs cancel 2026` with several matching runs once cancelled the newest: now it names them."""
    from dpo_core.cli.main import main
    from dpo_core.models import resolve_path
    from dpo_core.training.runs import get_run

    with jobs_env.write() as conn:
        for run_id, status in (("20261123-1836-aaaa", "running"), ("20261123-1837-bbbb", "queued"),
                               ("x_y-cccc", "completed")):
            conn.execute("INSERT INTO runs(id, kind, status, created) VALUES(?, 'train', ?, ?)",
                         (run_id, status, time.time()))
    for find in (job_status, get_run):
        with pytest.raises(NotFoundError, match="1836-aaaa.*1837-bbbb|1837-bbbb.*1836-aaaa") as err:
            find(jobs_env, "20261123-183")
        assert "Give more of the id" in err.value.fix
        assert find(jobs_env, "20261123-1837")["id"] == "20261123-1837-bbbb"  # unique: fine
        with pytest.raises(NotFoundError):
            find(jobs_env, "x%")  # LIKE wildcards are plain characters in an id
    assert get_run(jobs_env, "x_y")["id"] == "x_y-cccc"
    assert main(["runs", "cancel", "20261123-183"]) != 0
    assert "matches several runs" in capsys.readouterr().err
    statuses = jobs_env.query("SELECT status FROM runs WHERE id LIKE '2026%' ORDER BY id")
    assert [r["status"] for r in statuses] == ["running", "queued"]  # neither was touched
    for run_id in ("20261123-1836-aaaa", "20261123-1837-bbbb"):
        (workspace.runs / run_id / "final").mkdir(parents=True)
    with pytest.raises(Exception, match="matches several runs"):
        resolve_path("run:20261123-183", workspace)
    with pytest.raises(Exception, match="No run 'nope'"):
        resolve_path("run:nope", workspace)
    assert resolve_path("run:20261123-1836", workspace).endswith("20261123-1836-aaaa/final")
