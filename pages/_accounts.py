"""Sign-in for a lab with accounts (dpo_core/annotation/accounts.py), shared by app.py and the
Annotate page. Without any account nothing here asks for anything: the lab is single-user and
its one person is the owner. An annotator or a viewer is shown the Annotate page only."""

from __future__ import annotations

import streamlit as st

from dpo_core.annotation.accounts import (
    LOCAL_OWNER,
    AccessError,
    Account,
    accounts_exist,
    login,
    logout,
    session_account,
)
from pages._widgets import ensure_routed, errors_shown, store

TOKEN = "_annotation_token"
ROLE_PAGES = {"annotator": ("Annotate",), "viewer": ("Annotate",)}  # owners see every page


def signed_in_account() -> Account | None:
    """The local owner without accounts; else this session's account, or None (signed out or
    the session expired)."""
    if not accounts_exist(store()):
        return LOCAL_OWNER
    try:
        return session_account(store(), st.session_state.get(TOKEN))
    except AccessError:
        st.session_state.pop(TOKEN, None)
        return None


def visible_pages(pages: list[tuple[str, str, str]], account: Account | None) -> list:
    """The (path, title, icon) entries this account may open."""
    if account is None or account.role not in ROLE_PAGES:
        return pages
    return [p for p in pages if p[1] in ROLE_PAGES[account.role]]


def sign_in_form() -> None:
    """Ask for an account's name and password; stops the run until they are right."""
    st.title("DPO Lab")
    with st.form("account_sign_in"):
        name = st.text_input("Name")
        password = st.text_input("Password", type="password", key="account_password")
        signed = st.form_submit_button("Sign in")
    if signed:
        with errors_shown():
            st.session_state[TOKEN] = login(store(), name, password)
            st.rerun()
    st.stop()


def sign_out_button(account: Account) -> None:
    if account is LOCAL_OWNER:
        return
    st.caption(f"Signed in as **{account.name}** ({account.role})")
    if st.button("Sign out", key="account_sign_out"):
        logout(store(), st.session_state.pop(TOKEN, ""))
        st.rerun()


if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()
