"""Shared fixtures: a temporary workspace, its store, and the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_core.models import prepare_tiny_model
from dpo_core.store import Store, forget_stores
from dpo_core.workspace import get_workspace

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh workspace in a temporary folder ($DPO_LAB_HOME points at it)."""
    home = tmp_path / "lab"
    monkeypatch.setenv("DPO_LAB_HOME", str(home))
    forget_stores()
    ws = get_workspace(home)
    yield ws
    forget_stores()


@pytest.fixture
def store(workspace):
    s = Store(workspace.db_path)
    yield s
    s.close()


@pytest.fixture
def memory_store():
    s = Store(":memory:")
    yield s
    s.close()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A prepared builtin:tiny folder, built once per test session."""
    return prepare_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def workspace_with_tiny(workspace, tiny_model_dir):
    """A workspace whose builtin:tiny is already prepared (copied, so runs may write beside it)."""
    import shutil

    shutil.copytree(tiny_model_dir, workspace.models / "tiny")
    return workspace


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is not present (../shared/data is outside the repo)")
    return path


# ---------------------------------------------------------------------------------------------
# Browser tests: a real `streamlit run app.py` on a free loopback port, driven in headless
# Chromium through Playwright (the system browser: no browser download).
# ---------------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """`streamlit run app.py` in its own process group, stopped with everything it started."""

    def __init__(self, home: Path, env: dict | None = None):
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"streamlit-{self.port}.log"
        full_env = {**os.environ, "DPO_LAB_HOME": str(home), **(env or {})}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
                 "--server.port", str(self.port), "--server.address", "127.0.0.1",
                 "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self._wait_healthy()

    def _wait_healthy(self, attempts: int = 600) -> None:
        import time
        import urllib.request

        for _ in range(attempts):
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"streamlit did not come up: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        import os
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, Exception):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    from dpo_core.core_cli import find_chromium

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


def wait_for_app(page, timeout_ms: int = 120_000) -> None:
    """Wait until the Streamlit script run has finished and nothing is pending."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']",
                           timeout=timeout_ms)


def assert_no_exception(page) -> None:
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


@pytest.fixture(scope="session")
def default_model_home(tmp_path_factory) -> Path:
    """A workspace home with the real default model prepared once per session (slow tests)."""
    from dpo_core.models import prepare_default_model
    from dpo_core.workspace import get_workspace

    home = tmp_path_factory.mktemp("default-home")
    prepare_default_model(get_workspace(home))
    return home


@pytest.fixture
def workspace_with_default(workspace, default_model_home):
    """A fresh workspace that links the session's prepared default model (no re-preparation)."""
    src = default_model_home / "models" / "smollm2-135m-instruct"
    (workspace.models / "smollm2-135m-instruct").symlink_to(src, target_is_directory=True)
    return workspace
