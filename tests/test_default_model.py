"""The offline default model: prepared from the PyPI package, resumable, and it answers."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dpo_core.jobs.lifecycle import job_status, list_jobs, wait_job
from dpo_core.models import (
    DEFAULT_SPEC,
    READY_FILE,
    builtin_dir,
    model_state,
    resolve_model,
)
from dpo_core.startup import prepare_status, start_prepare
from dpo_core.store import open_store

pytestmark = pytest.mark.slow


def test_default_model_answers_a_question(workspace_with_default):
    loaded = resolve_model(DEFAULT_SPEC)
    state = model_state(DEFAULT_SPEC)
    assert state["ready"] and len(state["fingerprint"]) == 64
    assert state["wheel_sha256"].startswith("bcc81830")
    prompt = loaded.prompt_format.render_prompt("What is the capital of France?",
                                                loaded.tokenizer)
    ids = loaded.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = loaded.model.generate(**ids, max_new_tokens=12, do_sample=False)
    reply = loaded.tokenizer.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply


def test_killed_preparation_never_leaves_a_usable_half_folder_and_resumes(workspace):
    """Preparation is a job like the others (kind 'prepare'): killed half-way it is found lost,
    leaves nothing that looks ready, and a new start completes it."""
    store = open_store(workspace.db_path)
    job_id = start_prepare(workspace)["job"]
    # Kill it hard once it is converting (the longest step), wherever it is in that step.
    for _ in range(1200):
        status = prepare_status(workspace)
        if "Dequantizing" in status.get("message", "") or status["state"] == "ready":
            break
        time.sleep(0.25)
    os.killpg(job_status(store, job_id)["pgid"], signal.SIGKILL)
    final = builtin_dir("smollm2-135m-instruct", workspace)
    if not (final / READY_FILE).is_file():
        for _ in range(100):
            if prepare_status(workspace)["state"] == "failed":  # the dead process is noticed
                break
            time.sleep(0.1)
        assert prepare_status(workspace)["state"] == "failed"
        assert job_status(store, job_id)["status"] == "lost"
        assert not model_state(DEFAULT_SPEC, workspace)["ready"]
    # Starting again completes it, and it shows as a job like any other.
    again = start_prepare(workspace)
    if again["state"] != "ready":
        job = wait_job(store, again["job"], timeout=600)
        assert job["status"] == "completed", job["error_text"]
    assert (final / READY_FILE).is_file()
    assert not list(final.parent.glob(".*tmp-*")), "no temporary folder is left behind"
    assert json.loads((final / READY_FILE).read_text())["spec"] == DEFAULT_SPEC
    assert prepare_status(workspace)["state"] == "ready"
    assert {j["kind"] for j in list_jobs(store)} == {"prepare"}


def test_prepare_model_verb_records_a_job_with_report(workspace, default_model_home):
    """`prepare-model --report` shows on Home and in `jobs list` while it works."""
    import shutil

    shutil.copytree(default_model_home / "cache" / "downloads", workspace.cache / "downloads")
    env = {**os.environ, "DPO_LAB_HOME": str(workspace.home)}
    done = subprocess.run([sys.executable, "-m", "dpo_core", "prepare-model", "--report",
                           "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spec"] == DEFAULT_SPEC
    [job] = list_jobs(open_store(workspace.db_path))
    assert (job["kind"], job["status"], job["step"]) == ("prepare", "completed", 100)


def test_deleted_model_folder_is_prepared_again(workspace, default_model_home):
    import shutil

    # Reuse the downloaded wheel so this checks the re-preparation, not the network.
    wheel = default_model_home / "cache" / "downloads"
    shutil.copytree(wheel, workspace.cache / "downloads")
    from dpo_core.models import prepare_default_model

    first = prepare_default_model(workspace)
    shutil.rmtree(first)
    assert not model_state(DEFAULT_SPEC, workspace)["ready"]
    again = prepare_default_model(workspace)
    assert (again / READY_FILE).is_file()
