"""How Slurm's word becomes a run's state (no cluster needed: Slurm's answers are given)."""

from __future__ import annotations

import json

import pytest

from dpo_core.jobs import slurm_jobs
from dpo_core.jobs.rows import get_job, insert_job
from dpo_core.store import dumps, now


@pytest.mark.parametrize("state,reason,code,status,kind,words", [
    ("CANCELLED", "None", "0:9", "lost", "lost", "stopped from outside the lab"),
    ("NODE_FAIL", "NodeDown", "", "lost", "lost", "(reason: NodeDown)"),
    ("TIMEOUT", "TimeLimit", "0:15", "failed", "unknown", "longer time_limit"),
    ("OUT_OF_MEMORY", "OutOfMemory", "0:125", "failed", "oom", "mem_per_task"),
    ("FAILED", "NonZeroExitCode", "137:0", "failed", "unknown", "exit code 137:0"),
])
def test_a_job_slurm_ended_without_the_workers_word(state, reason, code, status, kind, words):
    got = slurm_jobs.explain({"job_id": "12", "state": state, "reason": reason,
                              "exit_code": code})
    assert got[:2] == (status, kind) and got[2].startswith(f"Slurm job 12 ended {state}")
    assert words in got[2]


def _row(store, slurm: dict, status: str = "queued"):
    with store.write() as conn:
        insert_job(conn, "r1", "train", "r1", {}, "/nowhere", status=status, host="slurm:one",
                   result_json=dumps({"slurm": slurm}))
    return store.query_one("SELECT * FROM runs WHERE id='r1'")


def test_a_resumed_run_is_submitted_once_even_by_two_lab_processes(memory_store, monkeypatch):
    submitted = []
    monkeypatch.setattr(slurm_jobs, "prepare", lambda store, name, run_dir: name)
    monkeypatch.setattr(slurm_jobs.slurm, "submit",
                        lambda *a, **k: submitted.append(a) or str(100 + len(submitted)))
    monkeypatch.setattr(slurm_jobs, "_submitted",
                        lambda sid, target: {"job_id": sid, "target": target})
    row = _row(memory_store, {"job_id": "7", "ended": now()})
    assert slurm_jobs.needs_submission(row)
    slurm_jobs.resubmit(memory_store, row)
    slurm_jobs.resubmit(memory_store, row)  # a second process with the row it read before
    assert len(submitted) == 1
    assert get_job(memory_store, "r1")["result"]["slurm"]["job_id"] == "101"


def test_a_refused_resubmission_fails_the_run_with_slurms_words(memory_store, monkeypatch):
    from dpo_core.errors import JobError

    def refuse(*a, **k):
        raise JobError("Slurm refused the job: Invalid account", "Set the target's account.")

    monkeypatch.setattr(slurm_jobs, "prepare", lambda store, name, run_dir: name)
    monkeypatch.setattr(slurm_jobs.slurm, "submit", refuse)
    slurm_jobs.resubmit(memory_store, _row(memory_store, {"job_id": "7", "ended": now()}))
    run = get_job(memory_store, "r1")
    assert run["status"] == "failed" and "Invalid account" in run["error_text"]
    assert json.loads(json.dumps(run["result"]))["slurm"]["ended"]
    assert run["where"].startswith(" · Slurm: target one")
