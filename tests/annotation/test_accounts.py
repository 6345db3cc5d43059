"""Accounts: argon2-hashed passwords, sessions that expire, limited login attempts, disabled
accounts, and the single-user lab when no account exists."""

from __future__ import annotations

import pytest

from dpo_core.annotation import accounts
from dpo_core.annotation.accounts import (
    LOCAL_OWNER,
    AccessError,
    accounts_exist,
    add_account,
    disable_account,
    judging_accounts,
    login,
    logout,
    session_account,
)
from dpo_core.errors import DataError
from tests.annotation.helpers import PASSWORD, team


def test_without_accounts_the_lab_is_single_user(memory_store):
    assert not accounts_exist(memory_store)
    assert judging_accounts(memory_store) == [LOCAL_OWNER]
    assert LOCAL_OWNER.role == "owner"


def test_passwords_are_stored_as_argon2_hashes_never_as_text(memory_store):
    team(memory_store, "ann")
    rows = memory_store.query("SELECT password_hash FROM accounts")
    assert all(r[0].startswith("$argon2id$") and PASSWORD not in r[0] for r in rows)
    assert len({r[0] for r in rows}) == len(rows)  # salted: same password, other hashes


def test_login_gives_a_session_that_names_the_account_and_ends_on_logout(memory_store):
    team(memory_store, "ann")
    token = login(memory_store, "ann", PASSWORD)
    assert session_account(memory_store, token).name == "ann"
    assert memory_store.scalar("SELECT token_hash FROM account_sessions") != token
    logout(memory_store, token)
    with pytest.raises(AccessError, match="session has ended"):
        session_account(memory_store, token)


def test_sessions_expire(memory_store, monkeypatch):
    team(memory_store, "ann")
    token = login(memory_store, "ann", PASSWORD)
    start = accounts.now()
    monkeypatch.setattr(accounts, "now", lambda: start + accounts.SESSION_S + 1)
    with pytest.raises(AccessError, match="session has ended"):
        session_account(memory_store, token)


def test_failed_logins_lock_the_account_for_a_while(memory_store, monkeypatch):
    team(memory_store, "ann")
    for _ in range(accounts.MAX_ATTEMPTS):
        with pytest.raises(AccessError, match="Wrong name or password"):
            login(memory_store, "ann", "guess")
    with pytest.raises(AccessError, match="Too many failed logins for 'ann'"):
        login(memory_store, "ann", PASSWORD)  # even the right password waits
    start = accounts.now()
    monkeypatch.setattr(accounts, "now", lambda: start + accounts.LOCKOUT_S + 1)
    assert session_account(memory_store, login(memory_store, "ann", PASSWORD)).name == "ann"


def test_a_wrong_name_and_a_wrong_password_read_the_same(memory_store):
    team(memory_store, "ann")
    with pytest.raises(AccessError) as nobody:
        login(memory_store, "nobody", PASSWORD)
    with pytest.raises(AccessError) as wrong:
        login(memory_store, "ann", "wrong one")
    assert str(nobody.value) == str(wrong.value)


def test_a_disabled_account_cannot_log_in_and_its_sessions_end(memory_store):
    people = team(memory_store, "ann")
    token = login(memory_store, "ann", PASSWORD)
    disable_account(memory_store, people["boss"], "ann")
    with pytest.raises(AccessError, match="session has ended"):
        session_account(memory_store, token)
    with pytest.raises(AccessError, match="'ann' is disabled"):
        login(memory_store, "ann", PASSWORD)
    assert [a.name for a in judging_accounts(memory_store)] == ["boss"]


@pytest.mark.parametrize("name, password, role, message", [
    ("", PASSWORD, "annotator", "Account name '' is not usable"),
    ("a b", PASSWORD, "annotator", "Account name 'a b' is not usable"),
    ("ann", PASSWORD, "admin", "Role 'admin' is unknown"),
    ("ann", "short", "annotator", "shorter than 8 characters"),
    ("boss", PASSWORD, "annotator", "An account named 'boss' exists"),
])
def test_bad_accounts_are_refused_with_the_fix(memory_store, name, password, role, message):
    people = team(memory_store)
    with pytest.raises(DataError, match=message):
        add_account(memory_store, people["boss"], name, password, role)


def test_the_first_account_is_an_owner(memory_store):
    with pytest.raises(DataError, match="first account must be an owner"):
        add_account(memory_store, LOCAL_OWNER, "ann", PASSWORD, "annotator")
    assert not accounts_exist(memory_store)


# ---------------------------------------------------------------------------------------------
# The OIDC login (Streamlit's st.login): the provider says who, the owner's account says what
# ---------------------------------------------------------------------------------------------
def test_an_oidc_account_signs_in_by_its_verified_address_only(memory_store):
    team(memory_store, "ann")
    boss = accounts.get_account(memory_store, "boss")
    made = add_account(memory_store, boss, "Cy@Uni.edu", None, "annotator", oidc=True)
    assert made.name == "cy@uni.edu" and made.oidc
    token = accounts.oidc_login(memory_store, "CY@uni.edu", True)
    assert session_account(memory_store, token) == made
    with pytest.raises(AccessError, match="not verified"):
        accounts.oidc_login(memory_store, "cy@uni.edu", False)
    with pytest.raises(AccessError, match="eve@uni.edu has no account.*--oidc"):
        accounts.oidc_login(memory_store, "eve@uni.edu", True)
    with pytest.raises(AccessError, match="gave no e-mail"):
        accounts.oidc_login(memory_store, None, True)


def test_a_password_account_is_never_opened_by_the_provider_nor_an_oidc_one_by_a_password(
        memory_store):
    team(memory_store, "ann")
    boss = accounts.get_account(memory_store, "boss")
    with pytest.raises(AccessError, match="has no account"):  # a password account, same name
        accounts.oidc_login(memory_store, "ann", True)
    add_account(memory_store, boss, "cy@uni.edu", None, "annotator", oidc=True)
    with pytest.raises(AccessError, match="Wrong name or password"):
        login(memory_store, "cy@uni.edu", "oidc")
    disable_account(memory_store, boss, "cy@uni.edu")
    with pytest.raises(AccessError, match="disabled"):
        accounts.oidc_login(memory_store, "cy@uni.edu", True)


@pytest.mark.parametrize("name,password,match", [
    ("not-an-address", None, "not an e-mail address"),
    ("cy@uni.edu", "a-long-password", "has no password"),
])
def test_bad_oidc_accounts_are_refused(memory_store, name, password, match):
    team(memory_store, "ann")
    boss = accounts.get_account(memory_store, "boss")
    with pytest.raises(DataError, match=match):
        add_account(memory_store, boss, name, password, "annotator", oidc=True)
    assert [a.name for a in accounts.list_accounts(memory_store)] == ["boss", "ann"]
