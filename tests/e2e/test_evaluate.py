"""The Evaluate page in a real browser: baseline vs a finished tiny run, as a background job, then
the comparison table, the paired test, the chart with intervals and the flip list."""

import pytest

from dpo_core.evaluation.results import list_evals
from dpo_core.publish.sample_run import RUN_ID, make_sample_run
from tests.support import StreamlitServer, add_pairs, assert_no_exception, wait_for_app


@pytest.mark.e2e
def test_evaluate_baseline_vs_run_in_the_browser(workspace_with_tiny, store, page):
    add_pairs(store)
    make_sample_run(workspace_with_tiny, store)
    server = StreamlitServer(workspace_with_tiny.home, env={"DPO_LAB_NO_PREPARE": "1"})
    try:
        page.goto(server.url)
        wait_for_app(page)
        page.locator("[data-testid='stSidebarNav'] a", has_text="Evaluate").click()
        page.get_by_role("heading", name="Evaluate").first.wait_for()
        wait_for_app(page)
        page.get_by_text(f"run:{RUN_ID}").first.wait_for()  # the finished run is preselected
        page.get_by_role("button", name="Start evaluation").click()
        # The job runs in the background; the progress fragment reruns the page when it ends.
        page.get_by_text("fixed (baseline wrong", exact=False).first.wait_for(timeout=180_000)
        wait_for_app(page)
        assert_no_exception(page)

        evals = list_evals(store)
        assert {e["model"] for e in evals} == {"builtin:tiny", f"run:{RUN_ID}"}
        # comparison table, the paired test of baseline vs tuned, the flip list
        assert page.get_by_test_id("stDataFrame").count() >= 3
        page.get_by_role("heading", name="Baseline vs tuned, pair by pair").first.wait_for()
        page.get_by_test_id("stPlotlyChart").first.wait_for()
        page.get_by_role("heading", name="Flip analysis").first.wait_for()
        page.get_by_role("button", name="Flips as CSV").first.wait_for()
        assert_no_exception(page)
    finally:
        server.stop()
