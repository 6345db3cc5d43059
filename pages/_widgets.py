"""Widgets shared by the pages: the sidebar, login, error display and small renderers."""

from __future__ import annotations

import hmac
import os
from contextlib import contextmanager

import streamlit as st

from dpo_core.device import detect_device
from dpo_core.errors import DPOLabError
from dpo_core.jobs.lifecycle import active_jobs
from dpo_core.startup import bootstrap
from dpo_core.store import open_store
from dpo_core.workspace import get_workspace


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


def require_login() -> None:
    """Ask for $DPO_LAB_PASSWORD when it is set (see README: putting a login in front)."""
    password = os.environ.get("DPO_LAB_PASSWORD")
    if not password or st.session_state.get("_authenticated"):
        return
    st.title("DPO Lab")
    typed = st.text_input("Password", type="password")
    if typed and hmac.compare_digest(typed, password):
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
        jobs = active_jobs(store())
        if jobs:
            st.caption("Jobs")
            for job in jobs:
                total = job["total_steps"] or 0
                progress = f" {job['step']}/{total}" if total else ""
                st.write(f"`{job['id']}` {job['kind']} · {job['status']}{progress}")
        else:
            st.caption("No jobs running.")


@contextmanager
def errors_shown():
    """Show a DPOLabError as a clear message instead of a traceback."""
    try:
        yield
    except DPOLabError as exc:
        st.error(exc.message + (f"\n\n**Fix:** {exc.fix}" if exc.fix else ""))
