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
from tests.support import wait_until

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
    wait_until(lambda: job_status(jobs_env, job_id)["step"] >= 2, "two steps done")
    job = cancel_job(jobs_env, job_id)
    assert job["status"] == "cancelled"
    assert 2 <= job["step"] < 1000
    assert job["result"]["kept"] == job["step"]


def test_killed_job_is_lost_not_running(jobs_env):
    job_id = start_job(jobs_env, "test", {"n": 1000, "sleep": 0.05}, f"{HERE}:count_target")
    wait_until(lambda: job_status(jobs_env, job_id)["step"] >= 1, "a step done")
    os.killpg(job_status(jobs_env, job_id)["pgid"], signal.SIGKILL)
    wait_until(lambda: job_status(jobs_env, job_id)["status"] == "lost", "lost detected")
    job = job_status(jobs_env, job_id)
    assert job["error_kind"] == "lost" and "gone" in job["error_text"]


def test_recycled_pid_is_lost_and_a_silent_live_job_is_stalled(jobs_env, monkeypatch):
    """One rule for every kind: a gone or recycled pid is lost; a live process that stopped
    beating stays running with a warning (training runs and other jobs alike)."""
    job_id = start_job(jobs_env, "test", {"n": 1000, "sleep": 0.05}, f"{HERE}:count_target")
    wait_until(lambda: job_status(jobs_env, job_id)["step"] >= 1, "a step done")
    with jobs_env.write() as conn:  # same pid, other start time: another process now
        conn.execute("UPDATE runs SET proc_start=proc_start+1 WHERE id=?", (job_id,))
    assert job_status(jobs_env, job_id)["status"] == "lost"
    job_id = start_job(jobs_env, "test", {"n": 1000, "sleep": 0.05}, f"{HERE}:count_target")
    wait_until(lambda: job_status(jobs_env, job_id)["step"] >= 1, "a step done")
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


# -- a clean environment, the watchdog, cancel of a job stuck in its set-up, the queue ------------
DISTRIBUTED = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": "29511", "TORCHELASTIC_RUN_ID": "x1", "ACCELERATE_USE_CPU": "true",
               "OMP_NUM_THREADS": "1"}


def env_target(config: dict, ctx) -> dict:
    return {"env": sorted(k for k in os.environ if k in DISTRIBUTED)}


def stuck_target(config: dict, ctx) -> dict:
    """Progress for a few steps, then hang (in C, say: SIGTERM cannot stop it)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for step in range(config.get("steps", 0)):
        ctx.progress(step + 1, 100)
        time.sleep(0.2)
    time.sleep(600)
    return {}


def test_a_job_launched_from_a_distributed_worker_gets_a_clean_environment(jobs_env,
                                                                          monkeypatch):
    """The next queued run was started by the finishing rank-0 worker with its RANK, WORLD_SIZE,
    MASTER_* and TORCHELASTIC_* and hung in c10d's rendezvous: every job starts clean."""
    for key, value in DISTRIBUTED.items():
        monkeypatch.setenv(key, value)
    job = wait_job(jobs_env, start_job(jobs_env, "test", {}, f"{HERE}:env_target"))
    assert job["status"] == "completed", job["error_text"]
    assert job["result"]["env"] == []


def test_a_job_whose_step_stops_moving_is_flagged_then_cancelled(jobs_env, monkeypatch):
    monkeypatch.setattr(rows, "MIN_PROGRESS_STALL_S", 0.0)
    job_id = start_job(jobs_env, "test", {"steps": 3, "stall_multiple": 3},
                       f"{HERE}:stuck_target")
    wait_until(lambda: "has not moved" in job_status(jobs_env, job_id)["warning"], "the warning")
    job = job_status(jobs_env, job_id)
    assert job["status"] == "running" and job["step"] == 3 and job["step_seconds"] > 0
    assert job_status(jobs_env, job_id)["warning"].startswith("Step 3 has not moved")
    assert cancel_job(jobs_env, job_id, timeout=1)["status"] == "cancelled"


@pytest.mark.slow  # waits for one heartbeat of the job (5 s)
def test_a_job_that_never_gets_going_fails_with_its_log_tail(jobs_env):
    job_id = start_job(jobs_env, "test", {"steps": 0}, f"{HERE}:stuck_target",
                       first_progress_s=1)
    job = wait_job(jobs_env, job_id)
    assert (job["status"], job["error_kind"]) == ("failed", "stalled")
    assert "no progress in its first" in job["error_text"] and "job process pid" in \
        job["error_text"]  # the log tail comes with it


def test_cancelling_a_job_stuck_in_set_up_ends_cancelled_not_lost(jobs_env, monkeypatch):
    from dpo_core.jobs import lifecycle

    monkeypatch.setattr(lifecycle, "SETUP_CANCEL_S", 0.5)  # SIGKILL follows the ignored SIGTERM
    job_id = start_job(jobs_env, "test", {"steps": 0}, f"{HERE}:stuck_target")
    job = cancel_job(jobs_env, job_id)
    assert (job["status"], job["error_kind"]) == ("cancelled", "")
    # a reader that notices the dead process while the cancel is under way says cancelled too
    job_id = start_job(jobs_env, "test", {"steps": 0}, f"{HERE}:stuck_target")
    with jobs_env.write() as conn:
        conn.execute("UPDATE runs SET cancel_requested=1 WHERE id=?", (job_id,))
    os.killpg(job_status(jobs_env, job_id)["pgid"], signal.SIGKILL)
    wait_until(lambda: job_status(jobs_env, job_id)["status"] != "running", "the kill noticed")
    assert job_status(jobs_env, job_id)["status"] == "cancelled"


def test_a_queued_job_says_its_place_and_what_it_waits_for(jobs_env):
    from dpo_core.jobs.rows import insert_job
    from dpo_core.training.runs import list_runs

    with jobs_env.write() as conn:
        insert_job(conn, "r0", "train", "first", {}, "", status="running")
        for n in (1, 2, 3):
            insert_job(conn, f"r{n}", "train", f"run {n}", {}, "")
    job = job_status(jobs_env, "r3")
    assert job["queue"] == {"position": 3, "ahead": ["r1", "r2"], "running": ["r0"]}
    assert {r["id"]: r.get("queue", {}).get("position") for r in list_runs(jobs_env)} == \
        {"r0": None, "r1": 1, "r2": 2, "r3": 3}
