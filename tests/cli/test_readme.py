"""The README's commands, run as written: every bash block after the two set-up commands runs in
a fresh workspace (the real default model, ../shared/data where it is named), with only the
sizes cut (fewer steps, pairs and trials) so it takes minutes. A README that drifts from the
code fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, SHARED_DATA, shared_data

# (what the README says, what the test runs instead): sizes only. Each must still be in the
# README, so an edit there cannot silently skip a cut here.
SMALLER = [
    ("cpu-quick-demo.yaml --set beta=0.2 --detach",
     "cpu-quick-demo.yaml --set beta=0.2 --set max_steps=2 --set max_train_pairs=8 "
     "--set eval_steps=0 --set sample_prompts=1 --set sample_max_new_tokens=4 --detach"),
    ("--dataset demo-instruct --quiet", "--dataset demo-instruct --limit 6 --quiet"),
    ("--suite ../shared/data/blimp --limit 100", "--suite ../shared/data/blimp --limit 2"),
    ("--seed 1", "--seed 1 --max-new-tokens 6"),
    ("sweep recipes/sweeps/tiny-random.yaml", "sweep recipes/sweeps/tiny-random.yaml --budget 2"),
]


def bash_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_the_two_setup_commands_are_what_ci_and_the_app_run():
    blocks = bash_blocks()
    assert blocks[0].strip() == "pip install -r requirements.txt && streamlit run app.py"
    ci = (REPO / ".ci/run").read_text(encoding="utf-8")
    assert blocks[1].strip() in ci, "`.ci/run` runs the README's test command"


def test_every_cut_still_matches_the_readme():
    journey = "\n".join(bash_blocks()[2:])
    for said, _ in SMALLER:
        assert said in journey, f"the README no longer says {said!r}: update SMALLER"


@pytest.mark.slow
def test_every_readme_command_runs(workspace_with_default, tmp_path):
    for needed in ("childes-dpo", "blimp", "orca-sweep"):
        shared_data(needed)  # skips, with a reason, where ../shared/data is absent
    script = "\n".join(bash_blocks()[2:])
    for said, instead in SMALLER:
        script = script.replace(said, instead)
    # a checkout's shape (recipes/ beside ../shared/data) in a scratch folder, so what the
    # commands write (flips.csv, ~/spaces) lands there and not in the repository
    checkout, home = tmp_path / "checkout", tmp_path / "home"
    checkout.mkdir()
    home.mkdir()
    (checkout / "recipes").symlink_to(REPO / "recipes", target_is_directory=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared/data").symlink_to(SHARED_DATA, target_is_directory=True)
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n"
                       "trap 'echo \"README LINE FAILED: $BASH_COMMAND\" >&2' ERR\n" + script],
        cwd=checkout, capture_output=True, text=True, timeout=3000,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
             "HOME": str(home), "DPO_LAB_HOME": str(workspace_with_default.home),
             "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    assert "ruby-sweep-8" in done.stdout  # the W&B sweep's best run heads its leaderboard
    assert (checkout / "flips.csv").is_file()
    assert (home / "spaces/my-space/app.py").is_file()
