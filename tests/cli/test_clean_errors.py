"""What a user sees when a command cannot do what was asked: one clear line (JSON with --json),
exit code 2, never a traceback; a closed pipe ends quietly; read-only verbs stay light."""

from __future__ import annotations

import json
import subprocess
import sys

from dpo_core.jobs.rows import insert_job
from tests.support import REPO, cli


def no_traceback(done: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


def test_import_log_of_a_binary_file_names_the_file_and_the_fix(workspace, tmp_path):
    binary = tmp_path / "metrics.csv"
    binary.write_bytes(b"step,loss\n1,0.69\n" + bytes(range(128, 256)) * 4)
    done = cli(workspace.home, "import-log", str(binary))
    no_traceback(done)
    assert done.returncode == 2
    assert f"{binary} is not a UTF-8 text file" in done.stderr and "Fix:" in done.stderr


def test_a_hub_recipe_offline_is_a_clear_error_not_a_half_minute_oserror(workspace):
    # a closed local port stands for "no network" on any machine, fast and deterministic
    done = cli(workspace.home, "train", "recipes/train/gpt2-orca-sweep-winner.yaml",
               "--set", "dataset=demo-instruct", "--estimate",
               env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(workspace.home)})
    no_traceback(done)
    assert done.returncode == 2
    assert "'openai-community/gpt2' is a hub id that is not in this machine's Hugging Face " \
           "cache, and the hub cannot be reached" in done.stderr
    assert "builtin:smollm2-135m-instruct (works offline)" in done.stderr


def test_json_errors_are_json_with_the_same_exit_code(workspace):
    done = cli(workspace.home, "runs", "show", "no-such-run", "--json")
    assert done.returncode == 2
    error = json.loads(done.stdout)
    assert error["error"] == "No run 'no-such-run' in this workspace."
    assert "runs list" in error["fix"] and error["kind"] == "NotFoundError"
    plain = cli(workspace.home, "runs", "show", "no-such-run")
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.startswith("error: No run 'no-such-run'")


def test_a_closed_pipe_ends_the_listing_quietly(workspace, store):
    with store.write() as conn:  # enough rows to overflow a pipe's buffer
        for i in range(1500):
            insert_job(conn, f"20260101-000000-{i:04d}", "train", f"run number {i}", {}, "",
                       status="completed", total_steps=10, step=10)
    env = {"DPO_LAB_HOME": str(workspace.home), "PYTHONPATH": str(REPO)}
    shell = f"{sys.executable} -m dpo_core runs list | head -n 1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True,
                          text=True, env=env, cwd=str(REPO))
    no_traceback(done)
    assert done.stdout.count("\n") == 1 and "run number" in done.stdout
    assert done.stderr == ""


READ_ONLY = (["runs", "list"], ["sweeps", "list"], ["evals", "list"], ["data", "list"],
             ["jobs", "list"])


def test_read_only_verbs_do_not_load_torch(workspace, store):
    with store.write() as conn:
        insert_job(conn, "20260101-000000-aaaa", "train", "a run", {"beta": 0.1}, "",
                   status="completed", total_steps=10, step=10)
    probe = ("import runpy, sys\n"
             "sys.argv = ['dpo_core'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('dpo_core', run_name='__main__')\n"
             "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
             "heavy = sorted({'torch', 'transformers', 'trl', 'peft', 'pandas'} & set(sys.modules))\n"
             "print('HEAVY', heavy, file=sys.stderr)\n")
    for verb in [*READ_ONLY, ["runs", "show", "20260101-000000-aaaa"]]:
        done = subprocess.run([sys.executable, "-c", probe, *verb], capture_output=True,
                              text=True, cwd=str(REPO),
                              env={"DPO_LAB_HOME": str(workspace.home), "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        assert "HEAVY []" in done.stderr, (verb, done.stderr)
