"""Widgets shared by the pages: the sidebar, login, error display and small renderers."""

from __future__ import annotations

import hmac
import os
import runpy
from contextlib import contextmanager
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from dpo_core.device import detect_device
from dpo_core.errors import DPOLabError
from dpo_core.jobs.lifecycle import active_jobs, with_queue
from dpo_core.startup import bootstrap
from dpo_core.store import open_store
from dpo_core.workspace import get_workspace

APP = Path(__file__).resolve().parents[1] / "app.py"


GO_TO = "_go_to_page"


def ensure_routed() -> None:
    """Hand a script Streamlit ran straight from the pages/ folder to app.py's router.

    Streamlit serves a `pages/` folder beside the main script as pages of its own (its older
    multipage mode) until the main script calls st.navigation: a deep link such as /runs on a
    fresh server, or any URL while the login stopped app.py before st.navigation, would run
    pages/runs.py, or a helper module, without the router and its login. Every file in pages/
    calls this first: it turns that mode off and runs app.py in its place, in this same run (so
    a click that started the run is not lost), then stops.
    """
    if not PagesManager.uses_pages_directory:
        return
    PagesManager.uses_pages_directory = False
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()


def go_to(page: str, **state) -> None:
    """Open another page with `state` set, from inside a live fragment (`run_every`): a page
    switch made in a fragment's run races the fragment's next tick, and under load the new page
    stayed blank. The switch is made by app.py at the start of a full rerun instead."""
    st.session_state.update(state)
    st.session_state[GO_TO] = page
    st.rerun(scope="app")


def pending_page() -> str | None:
    """The page `go_to` asked for (app.py switches to it before any page runs)."""
    return st.session_state.pop(GO_TO, None)


def use_router() -> None:
    """app.py itself: from now on Streamlit runs app.py for every URL (see ensure_routed)."""
    PagesManager.uses_pages_directory = False


@st.cache_resource(show_spinner=False)
def device_info():
    return detect_device()


@st.cache_resource(show_spinner=False)
def _bootstrapped(home: str) -> dict:
    """Seed demo data and start preparing the default model, once per workspace per server."""
    return bootstrap(get_workspace(home))


def workspace():
    ws = get_workspace()
    _bootstrapped(str(ws.home))
    return ws


def store():
    return open_store(workspace().db_path)


def logged_in() -> bool:
    """True without $DPO_LAB_PASSWORD (a local lab), or once this session gave it."""
    return not os.environ.get("DPO_LAB_PASSWORD") or bool(st.session_state.get("_authenticated"))


def login_form() -> None:
    """Ask for $DPO_LAB_PASSWORD (see README: putting a login in front); stops the run until
    it is given, then reruns into the page that was asked for."""
    st.title("DPO Lab")
    typed = st.text_input("Password", type="password")
    if typed and hmac.compare_digest(typed, os.environ.get("DPO_LAB_PASSWORD", "")):
        st.session_state["_authenticated"] = True
        st.rerun()
    elif typed:
        st.error("Wrong password.")
    st.stop()


def sidebar() -> None:
    ws = workspace()
    with st.sidebar:
        st.caption("Workspace")
        st.code(str(ws.home), language=None)
        st.caption(f"Device: {device_info().label}")
        jobs_panel()


@st.fragment(run_every=3)
def jobs_panel() -> None:
    """Queued and running jobs, redrawn every few seconds (the same moment the pages show)."""
    jobs = with_queue(store(), active_jobs(store()))
    if not jobs:
        st.caption("No jobs running.")
        return
    st.caption("Jobs")
    for job in jobs:
        total = job["total_steps"] or 0
        progress = f" {job['step']}/{total}" if total and job["status"] == "running" else ""
        status = f"queued #{job['queue']['position']}" if job.get("queue") else job["status"]
        st.write(f"`{job['id']}` {job['kind']} · {status}{progress}")


@contextmanager
def errors_shown():
    """Show a DPOLabError as a clear message instead of a traceback."""
    try:
        yield
    except DPOLabError as exc:
        st.error(exc.message + (f"\n\n**Fix:** {exc.fix}" if exc.fix else ""))


if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()
