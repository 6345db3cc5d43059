"""With DPO_LAB_PASSWORD set, every URL shows the login and nothing else: the app's pages, the
helper modules in pages/ (Streamlit would serve the folder's files as pages), and the very first
request a fresh server gets (Streamlit's folder-based pages mode, before app.py ever ran)."""

from __future__ import annotations

import pytest

from tests.support import REPO, StreamlitServer, wait_for_app

PASSWORD = "a long secret for the test"
APP_PAGES = ["", "data", "generate", "train", "runs", "evaluate", "chat", "sweeps"]
# What Streamlit's folder-based pages mode would name the helper modules in pages/.
HELPERS = sorted(p.stem.lstrip("_") for p in (REPO / "pages").glob("_*.py"))
ACTIONS = ("Stop", "Delete", "Launch", "Resume", "Start evaluation", "Import", "Save edits")


def assert_only_the_login(page, url: str) -> None:
    page.goto(url)
    wait_for_app(page)
    page.get_by_label("Password", exact=True).wait_for()
    body = page.locator("[data-testid='stApp']").inner_text()
    for helper in HELPERS:
        assert helper.replace("_", " ") not in body.lower(), (url, helper, body)
    assert page.locator("[data-testid='stSidebarNav']").count() == 0, (url, body)
    buttons = [b.inner_text() for b in page.locator("button").all()]
    assert not [b for b in buttons if b.strip() in ACTIONS], (url, buttons)
    assert page.locator("[data-testid='stDataFrame']").count() == 0, url


@pytest.mark.e2e
@pytest.mark.parametrize("first", ["runs", f"{HELPERS[0]}"], ids=["page-first", "helper-first"])
def test_every_url_shows_only_the_login(tmp_path, page, first):
    """The first request of a fresh server is a deep link; then every page and helper URL."""
    server = StreamlitServer(tmp_path / "lab", env={"DPO_LAB_PASSWORD": PASSWORD,
                                                    "DPO_LAB_NO_PREPARE": "1"})
    try:
        assert_only_the_login(page, f"{server.url}/{first}")
        for name in [*APP_PAGES, *HELPERS]:
            context = page.context.browser.new_context()  # a new visitor: no session
            try:
                assert_only_the_login(context.new_page(), f"{server.url}/{name}")
            finally:
                context.close()
        # The right password opens the page that was asked for, with the app's navigation.
        page.goto(f"{server.url}/runs")
        wait_for_app(page)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_label("Password", exact=True).press("Enter")
        page.get_by_role("heading", name="Runs").first.wait_for()
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Evaluate" in nav and not any(h.replace("_", " ") in nav.lower()
                                             for h in HELPERS), nav
    finally:
        server.stop()
