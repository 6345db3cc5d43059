"""Browser fixtures: one headless Chromium per session, a fresh page (context) per test."""

from __future__ import annotations

import pytest

from dpo_core.cli.doctor import find_chromium
from tests.support import CHROMIUM_ARGS


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    exe = find_chromium()
    if exe is None:
        pytest.fail("No Chromium found: run `bash .ci/ensure-chromium` (the README's test command "
                    "does this).")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()
