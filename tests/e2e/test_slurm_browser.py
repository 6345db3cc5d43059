"""In a real browser: a run sent to the Slurm target from the Train page, its Slurm job shown
and its curve growing live on the Runs page until it completes."""

from __future__ import annotations

import re

import pytest

from dpo_core.cluster.targets import SlurmTarget, save_target
from dpo_core.store import Store
from tests.cluster.conftest import slurm_cluster  # noqa: F401 (the one-node cluster, session-wide)
from tests.e2e.test_train_runs import LOSS_POINTS_JS, _open, _set_number, _settle, _wait_until
from tests.support import StreamlitServer, wait_for_app

STEPS = 12


def _kept(pg, label: str, value) -> bool:
    """The field shows `value` after the page's reruns (typed again if a rerun lost it)."""
    box = pg.get_by_label(label, exact=True)
    if box.input_value() == str(value):
        return True
    _set_number(pg, label, value)
    return False


@pytest.mark.e2e
@pytest.mark.slurm
def test_a_run_on_the_slurm_target_shows_its_live_curve(
        workspace_with_tiny, slurm_cluster, page):  # noqa: F811 (the imported fixture)
    home = workspace_with_tiny.home
    db = Store(workspace_with_tiny.db_path)
    save_target(db, SlurmTarget(name="one", partition="debug", time_limit="10",
                                cpus_per_task=1))
    server = StreamlitServer(home, env={"DPO_LAB_NO_PREPARE": "1"})
    try:
        page.goto(server.url)
        wait_for_app(page)
        _open(page, "Train")
        page.get_by_test_id("stSelectbox").filter(has_text="Recipe").locator("input").click()
        page.get_by_role("option", name="smoke-tiny").click()
        _settle(page)
        page.get_by_text("Processes", exact=True).click()
        _settle(page)
        page.get_by_test_id("stSelectbox").filter(has_text="target").locator("input").click()
        page.get_by_role("option", name="one", exact=True).click()
        _settle(page)
        page.get_by_text("Testing hooks", exact=True).click()
        _settle(page)
        _set_number(page, "debug.step_delay", "1.5")
        _set_number(page, "max_steps", STEPS)
        _wait_until(page, lambda: _kept(page, "max_steps", STEPS))
        page.get_by_role("button", name="Launch").click()
        page.get_by_role("heading", name="Runs").first.wait_for()
        _settle(page)

        run_id = db.scalar("SELECT id FROM runs WHERE kind='train' ORDER BY created DESC")
        assert run_id and db.scalar("SELECT host FROM runs WHERE id=?", (run_id,)) == "slurm:one"
        assert db.scalar("SELECT total_steps FROM runs WHERE id=?", (run_id,)) == STEPS
        page.get_by_text(re.compile(r"Slurm: target one, job \d+")).first.wait_for(
            timeout=120_000)
        page.get_by_text(re.compile(rf"step [1-9]\d*/{STEPS}")).first.wait_for(timeout=180_000)
        _wait_until(page, lambda: page.evaluate(LOSS_POINTS_JS) >= 1)
        first = page.evaluate(LOSS_POINTS_JS)
        _wait_until(page, lambda: page.evaluate(LOSS_POINTS_JS) > first)  # live, no click
        page.get_by_text("· completed").first.wait_for(timeout=240_000)
        _settle(page)
        assert page.evaluate(LOSS_POINTS_JS) == STEPS
    finally:
        server.stop()
        from dpo_core.training.runs import cancel_run

        for row in db.query("SELECT id FROM runs WHERE status IN ('queued', 'running')"):
            cancel_run(db, row["id"], timeout=10)
        db.close()
