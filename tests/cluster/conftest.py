"""The one-node Slurm cluster (`.ci/ensure-slurm`) and a target that points at it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from dpo_core.cluster.targets import SlurmTarget, save_target
from tests.support import REPO


@pytest.fixture(scope="session")
def slurm_cluster():
    """Slurm up on this machine (installed and started once; idempotent). Skips, with the
    reason, only where it cannot be installed (no root, no package source)."""
    script = str(REPO / ".ci" / "ensure-slurm")
    was_up = shutil.which("sinfo") and subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout.strip()
    done = subprocess.run(["bash", script], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not shutil.which("sbatch"):
        pytest.skip("a one-node Slurm could not be started here (.ci/ensure-slurm: "
                    f"{(done.stderr or done.stdout).strip()[-300:]})")
    yield True
    if not was_up:  # started for these tests: stopped after them
        subprocess.run(["bash", script, "stop"], capture_output=True, timeout=60)


@pytest.fixture
def slurm_target(slurm_cluster, store):
    """A target `one` on the local cluster's default partition (saved in the store)."""
    target = SlurmTarget(name="one", partition="debug", time_limit="10", cpus_per_task=1,
                         signal_s=30)
    save_target(store, target)
    return target
