"""Train and Runs in a real browser: launch the tiny recipe, watch it live, reload mid-run and
keep the whole history, stop, resume, and see it finish with every step logged exactly once."""

import re

import pytest

from dpo_core.store import Store
from tests.support import StreamlitServer, assert_no_exception, wait_for_app

STEPS = 16  # with debug.step_delay=2 the run lasts long enough to watch, reload and stop it
LOSS_POINTS_JS = """() => {
  const plot = [...document.querySelectorAll('.js-plotly-plot')]
    .find(p => (p.layout?.title?.text || '').replace(/<[^>]+>/g, '').startsWith('loss (train'));
  return plot ? Math.max(0, ...plot.data.map(t => (t.x || []).length)) : -1;
}"""


def _settle(page) -> None:
    page.wait_for_timeout(300)
    wait_for_app(page)
    assert_no_exception(page)


def _open(page, name: str) -> None:
    page.locator("[data-testid='stSidebarNav'] a", has_text=name).click()
    page.get_by_role("heading", name=name).first.wait_for()
    _settle(page)


def _set_number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    _settle(page)


def _shown_step(page) -> int:
    """The step in the progress bar's text ("step 7/12")."""
    text = page.get_by_text(re.compile(rf"step \d+/{STEPS}")).first.inner_text()
    return int(re.search(r"step (\d+)/", text).group(1))


def _wait_until(page, check, timeout_ms: int = 120_000) -> None:
    for _ in range(timeout_ms // 250):
        if check():
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"never true: {check.__doc__ or check}")


def _launch_smoke_tiny(page) -> None:
    _open(page, "Train")
    page.get_by_test_id("stSelectbox").filter(has_text="Recipe").locator("input").click()
    page.get_by_role("option", name="smoke-tiny").click()
    _settle(page)
    _set_number(page, "max_steps", STEPS)
    _set_number(page, "save_steps", 2)
    page.get_by_text("Testing hooks", exact=True).click()
    _settle(page)
    _set_number(page, "debug.step_delay", "2.0")
    page.get_by_role("button", name="Launch").click()
    page.get_by_role("heading", name="Runs").first.wait_for()
    _settle(page)


def _stop_workers(db_path) -> None:
    """Workers outlive the app by design: stop any the test left running."""
    from dpo_core.training.runs import cancel_run

    db = Store(db_path)
    for row in db.query("SELECT id FROM runs WHERE status IN ('queued', 'running')"):
        cancel_run(db, row["id"], timeout=10)
    db.close()


@pytest.mark.e2e
def test_launch_watch_reload_stop_resume_finish(workspace_with_tiny, page):
    home = workspace_with_tiny.home
    server = StreamlitServer(home, env={"DPO_LAB_NO_PREPARE": "1"})
    try:
        page.goto(server.url)
        wait_for_app(page)
        _launch_smoke_tiny(page)
        db = Store(workspace_with_tiny.db_path)
        run_id = db.scalar("SELECT id FROM runs WHERE kind='train' ORDER BY created DESC")
        assert run_id, "Launch queued a run"

        # live: the progress bar and the loss chart move on without any click
        page.get_by_text(re.compile(rf"step [1-9]\d*/{STEPS}")).first.wait_for(timeout=180_000)
        _wait_until(page, lambda: page.evaluate(LOSS_POINTS_JS) >= 1)
        first_step, first_points = _shown_step(page), page.evaluate(LOSS_POINTS_JS)
        _wait_until(page, lambda: _shown_step(page) > first_step
                    and page.evaluate(LOSS_POINTS_JS) > first_points)
        seen = page.evaluate(LOSS_POINTS_JS)

        # reload mid-run: a fresh session rebuilds the whole history from the store
        page.reload()
        wait_for_app(page)
        _open(page, "Runs")
        _wait_until(page, lambda: page.evaluate(LOSS_POINTS_JS) >= seen)

        page.get_by_role("button", name="Stop").click()
        page.get_by_text("· cancelled").first.wait_for(timeout=120_000)
        _settle(page)
        stopped = db.query_one("SELECT status, step FROM runs WHERE id=?", (run_id,))
        assert stopped["status"] == "cancelled" and 0 < stopped["step"] < STEPS

        page.get_by_role("button", name="Resume").click()
        _settle(page)
        page.get_by_text("· completed").first.wait_for(timeout=240_000)
        _settle(page)
        assert page.evaluate(LOSS_POINTS_JS) == STEPS
        assert f"step {STEPS}/{STEPS}" in page.get_by_test_id("stProgress").first.inner_text()

        done = db.query_one("SELECT status, step, resumed_from FROM runs WHERE id=?", (run_id,))
        assert (done["status"], done["step"]) == ("completed", STEPS)
        assert done["resumed_from"].startswith("checkpoint-"), "resumed from a checkpoint"
        counts = dict(db.query("SELECT step, COUNT(*) FROM metrics WHERE run_id=? AND "
                               "split='train' AND key='loss' GROUP BY step", (run_id,)))
        assert counts == {step: 1 for step in range(1, STEPS + 1)}
        db.close()
    finally:
        server.stop()
        _stop_workers(workspace_with_tiny.db_path)
