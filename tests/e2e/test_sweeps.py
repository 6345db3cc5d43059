"""The Sweeps page in a real browser: a finished sweep's leaderboard and plots render."""

import pytest

from dpo_core.store import Store
from tests.support import StreamlitServer, assert_no_exception, recorded_sweep, wait_for_app


@pytest.mark.e2e
def test_sweeps_page_renders_leaderboard_and_plots(tmp_path, page):
    home = tmp_path / "lab"
    home.mkdir()
    store = Store(home / "lab.db")
    recorded_sweep(store)
    store.close()
    server = StreamlitServer(home, env={"DPO_LAB_NO_PREPARE": "1"})
    try:
        page.goto(server.url)
        wait_for_app(page)
        page.get_by_role("link", name="Sweeps").click()
        page.get_by_text("recorded-3").first.wait_for()
        wait_for_app(page)
        page.locator(".js-plotly-plot").first.wait_for()
        assert page.locator(".js-plotly-plot").count() >= 2  # parallel coordinates, importance
        assert page.get_by_text("out of memory", exact=False).count() >= 1  # the failed run
        assert_no_exception(page)
    finally:
        server.stop()
