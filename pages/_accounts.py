"""Sign-in for a lab with accounts (dpo_core/annotation/accounts.py), shared by app.py and the
Annotate page. Without any account nothing here asks for anything: the lab is single-user and
its one person is the owner. An annotator or a viewer is shown the Annotate page only.

Where secrets.toml has an `[auth]` section (Streamlit's OpenID Connect login, README: "Team
annotation"), the sign-in also offers the provider: the address it vouches for opens the lab
session of the OIDC account with that address, and of no other account."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError
from streamlit.runtime.scriptrunner import get_script_run_ctx

from dpo_core.annotation.accounts import (
    LOCAL_OWNER,
    AccessError,
    Account,
    accounts_exist,
    login,
    logout,
    oidc_login,
    session_account,
)
from pages._widgets import ensure_routed, errors_shown, logged_in, store

TOKEN = "_annotation_token"
REFUSED = "_oidc_refused"  # why the provider's identity opened no lab session
ROLE_PAGES = {"annotator": ("Annotate",), "viewer": ("Annotate",)}  # owners see every page


def signed_in_account() -> Account | None:
    """The local owner without accounts; else this session's account, or None (signed out or
    the session expired). Someone the OIDC provider signed in gets their account's session."""
    if not accounts_exist(store()):
        return LOCAL_OWNER
    try:
        return session_account(store(), st.session_state.get(TOKEN))
    except AccessError:
        st.session_state.pop(TOKEN, None)
    identity = provider_identity()
    if identity is None:
        return None
    try:
        st.session_state[TOKEN] = oidc_login(store(), *identity)
    except AccessError as exc:
        st.session_state[REFUSED] = f"{exc.message}\n\n**Fix:** {exc.fix}"
        return None
    return session_account(store(), st.session_state[TOKEN])


def acting_account() -> Account | None:
    """The account acting in this script run, for the library's owner checks
    (`dpo_core/access.py`): the session's, None before a sign-in or the lab's password; the lab
    itself (as owner) in threads that belong to no session."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return LOCAL_OWNER
    if not logged_in():
        return None
    return signed_in_account()


def oidc_providers() -> list[str | None]:
    """The OIDC providers of secrets.toml's [auth] section: [None] for one unnamed provider,
    the names of [auth.NAME] sections otherwise, [] when the login is not configured."""
    try:
        auth = st.secrets.get("auth")
    except (FileNotFoundError, StreamlitSecretNotFoundError):
        return []
    if not isinstance(auth, Mapping):
        return []
    if "client_id" in auth:
        return [None]
    return [name for name, conf in auth.items() if isinstance(conf, Mapping)
            and "client_id" in conf]


def provider_identity() -> tuple[str | None, bool] | None:
    """(e-mail, verified) of whom the configured OIDC provider signed in; None otherwise."""
    if not oidc_providers() or not st.user.get("is_logged_in"):
        return None
    return st.user.get("email"), bool(st.user.get("email_verified", True))


def visible_pages(pages: list[tuple[str, str, str]], account: Account | None) -> list:
    """The (path, title, icon) entries this account may open."""
    if account is None or account.role not in ROLE_PAGES:
        return pages
    return [p for p in pages if p[1] in ROLE_PAGES[account.role]]


def sign_in_form() -> None:
    """Ask for an account's name and password (or offer the OIDC provider); stops the run
    until someone is signed in."""
    st.title("DPO Lab")
    if refused := st.session_state.pop(REFUSED, None):
        st.error(refused)
        st.button("Sign out of the provider", on_click=st.logout)
    for provider in oidc_providers():
        if st.button(f"Sign in with {provider or 'your organisation'}",
                     key=f"account_oidc_{provider}", type="primary"):
            st.login(provider) if provider else st.login()
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
        if account.oidc and st.user.get("is_logged_in"):
            st.logout()  # the provider's cookie too, or the next run signs straight back in
        st.rerun()


if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()
