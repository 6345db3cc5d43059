"""The channel: a job's lines in its run folder, ingested into the store exactly once."""

from __future__ import annotations

import json

import pytest

from dpo_core.jobs import channel, lifecycle
from dpo_core.jobs.channel import CHANNEL_FILE, Channel, ingest, read_events
from dpo_core.jobs.rows import get_job, insert_job
from dpo_core.training import metrics

SINK = metrics.SINK


@pytest.fixture
def job(store, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with store.write() as conn:
        insert_job(conn, "r1", "train", "r1", {}, str(run_dir), status="queued",
                   result_json=json.dumps({"estimate": {"total": 9}}))
    return run_dir


def test_lines_are_ingested_once_and_in_order(store, job):
    ch = Channel(job)
    ch.append("started", host="node1")
    ch.append("progress", step=1, total_steps=3, counters={"message": "training"})
    metrics.write_metrics(ch, "r1", 1, {"loss": 0.69, "rewards/margins": 0.1, "note": "text"})
    metrics.write_sample(ch, "r1", 1, "what is that ?", "a ball")
    assert ingest(store, "r1", job, SINK) == 4
    assert ingest(store, "r1", job, SINK) == 0  # read twice: stored once
    row = get_job(store, "r1")
    assert (row["status"], row["step"], row["total_steps"]) == ("running", 1, 3)
    assert row["result"] == {"estimate": {"total": 9}, "message": "training"}
    assert metrics.last_values(store, "r1") == {"loss": 0.69, "rewards/margins": 0.1}
    assert [s["completion"] for s in metrics.read_samples(store, "r1")] == ["a ball"]

    metrics.write_metrics(ch, "r1", 2, {"loss": 0.5})
    ch.append("final", status="completed", result={"final": "x"})
    assert ingest(store, "r1", job, SINK) == 2
    row = get_job(store, "r1")
    assert row["status"] == "completed" and row["result"]["final"] == "x"
    assert [m["step"] for m in metrics.read_metrics(store, "r1") if m["key"] == "loss"] == [1, 2]


def test_a_line_still_being_written_waits_and_a_torn_one_is_skipped(store, job):
    path = job / CHANNEL_FILE
    Channel(job).append("metrics", step=1, logs={"loss": 1.0})
    with open(path, "ab") as f:
        f.write(b'{"e": "metrics", "step": 2, "lo')  # its writer is mid-line
    assert ingest(store, "r1", job, SINK) == 1
    offset = int(store.get_setting(channel.offset_key("r1")))
    assert offset == path.read_bytes().index(b"\n") + 1
    # the writer was killed there; the next process ends the torn line before it writes
    Channel(job).append("metrics", step=2, logs={"loss": 0.9})
    assert ingest(store, "r1", job, SINK) == 1
    assert metrics.last_values(store, "r1") == {"loss": 0.9}
    assert read_events(path, 0)[1] == path.stat().st_size


def test_a_deleted_job_leaves_no_channel_offset_behind(store, job):
    from dpo_core.jobs.rows import delete_job

    Channel(job).append("metrics", step=1, logs={"loss": 1.0})
    assert ingest(store, "r1", job, SINK) == 1
    delete_job(store, "r1")
    assert store.get_setting(channel.offset_key("r1")) is None
    assert store.scalar("SELECT COUNT(*) FROM settings WHERE key LIKE 'channel.%'") == 0


def test_a_requeued_worker_resuming_drops_what_was_logged_past_its_checkpoint(store, job):
    ch = Channel(job)
    for step in (1, 2, 3):
        metrics.write_metrics(ch, "r1", step, {"loss": 1.0 / step})
    ch.append("requeue")
    ch.append("resume", step=2, checkpoint="checkpoint-2")
    metrics.write_metrics(ch, "r1", 3, {"loss": 0.25})
    ingest(store, "r1", job, SINK)
    losses = {m["step"]: m["value"] for m in metrics.read_metrics(store, "r1")}
    assert losses == {1: 1.0, 2: 0.5, 3: 0.25}
    row = get_job(store, "r1")
    assert row["resumed_from"] == "checkpoint-2" and row["result"]["requeues"] == 1


def test_the_lab_catches_up_after_being_off(store, job):
    """Nothing is read while the job runs; the first read afterwards stores everything."""
    ch = Channel(job)
    for step in range(1, 301):
        metrics.write_metrics(ch, "r1", step, {"loss": 1.0 / step})
    ch.append("final", status="completed", result={})
    ingest(store, "r1", job, SINK)
    assert metrics.logged_steps(store, "r1")[0] == 300
    assert get_job(store, "r1")["status"] == "completed"


@pytest.mark.slow
def test_a_local_job_can_report_through_the_channel(store, workspace_with_tiny):
    """The same worker on this machine with `channel` on: no store writes from the job, the
    lab ingests the lines (what the bench compares with direct writes)."""
    from dpo_core.training import runs
    from tests.support import tiny_config, toy_dataset

    toy_dataset(store, 16, 4)
    cfg = tiny_config(max_steps=3)
    run_id = runs.start_run(store, cfg, launch=False)
    run_dir = runs.get_run(store, run_id)["run_dir"]
    job = json.loads((lifecycle.Path(run_dir) / "job.json").read_text())
    job["channel"] = True
    (lifecycle.Path(run_dir) / "job.json").write_text(json.dumps(job))
    lifecycle.update_job(store, run_id, result_json=json.dumps({"channel": True}))
    run = runs.wait_run(store, run_id, poll=0.3)
    assert run["status"] == "completed", run["error_text"]
    assert [m["step"] for m in metrics.read_metrics(store, run_id) if m["key"] == "loss"] \
        == [1, 2, 3]
    assert (lifecycle.Path(run_dir) / CHANNEL_FILE).stat().st_size > 0
    assert metrics.read_samples(store, run_id)
