"""Who may act. Owner-only library calls (start, cancel or delete jobs and runs; import, delete
or export data and models) call `require_owner`, which asks the account resolver this process
registered. The Streamlit app registers one that answers with the session's signed-in account
(`pages/_accounts.py`): an annotator or viewer is refused in the library, whatever page or
fragment made the call. The command line and job processes register none and act as the lab's
owner (whoever runs them can already write the lab's files); so does the lab's own set-up
(`as_lab`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import DPOLabError

OWNER_ACTIONS = "start runs and jobs, import, delete or export"


class AccessError(DPOLabError):
    """The account acting may not do this (a role check in the library, not only in pages)."""


_resolver: Callable[[], object | None] | None = None
_lab = threading.local()


def set_resolver(resolver: Callable[[], object | None]) -> None:
    """Register how this process finds the account acting: it returns an account (with `name`,
    `role`, `disabled`) or None when nobody is signed in."""
    global _resolver
    _resolver = resolver


@contextmanager
def as_lab() -> Iterator[None]:
    """The lab's own work in this thread (seeding the demo data, preparing the default model at
    start-up): not an action of whoever's session happened to trigger it."""
    before = getattr(_lab, "active", False)
    _lab.active = True
    try:
        yield
    finally:
        _lab.active = before


def require_owner(action: str) -> None:
    """Refuse `action` unless the account acting is an owner (see the module docstring)."""
    if _resolver is None or getattr(_lab, "active", False):
        return
    who = _resolver()
    if who is None:
        raise AccessError(f"Nobody is signed in, so nobody may {action}.",
                          "Sign in with an owner's account.")
    if getattr(who, "role", None) != "owner" or getattr(who, "disabled", False):
        raise AccessError(f"{who.name} ({who.role}) may not {action}.",
                          f"Ask an owner: only owners {OWNER_ACTIONS}.")
