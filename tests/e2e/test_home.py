"""The first start in a real browser: demo data loaded, default model prepared with progress."""

import pytest

from tests.support import StreamlitServer, assert_no_exception, wait_for_app


@pytest.mark.e2e
@pytest.mark.slow
def test_first_start_prepares_default_model_and_shows_demo_data(tmp_path, page):
    server = StreamlitServer(tmp_path / "lab")
    try:
        page.goto(server.url)
        wait_for_app(page)
        assert_no_exception(page)
        page.get_by_role("heading", name="DPO Lab").first.wait_for()
        # First start: a progress indicator, then ready (the preparation runs in the background).
        page.get_by_text("is ready", exact=False).first.wait_for(timeout=300_000)
        assert page.get_by_text("demo-childes").count() >= 1
        assert_no_exception(page)
    finally:
        server.stop()
