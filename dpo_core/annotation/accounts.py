"""Accounts of a shared lab: owner, annotator, viewer; argon2-hashed passwords, sessions that
expire, login attempts limited. An account may instead sign in through the lab's OpenID Connect
provider (Streamlit's `st.login`, configured in secrets.toml): it is named by the e-mail address
the provider vouches for and has no password. With no account at all the lab is the single-user
lab: its one person is the local owner (`LOCAL_OWNER`) and nothing asks for a login."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..access import AccessError
from ..errors import DataError, NotFoundError
from ..store import Store, now

Role = Literal["owner", "annotator", "viewer"]
ROLES: tuple[str, ...] = ("owner", "annotator", "viewer")
JUDGING_ROLES = ("owner", "annotator")  # a viewer changes nothing
SESSION_S = 8 * 3600  # a login lasts a working day
MAX_ATTEMPTS = 5  # failed logins in a row before the account waits
LOCKOUT_S = 15 * 60
MIN_PASSWORD = 8
OIDC = "oidc"  # the password_hash of an account that signs in through the OIDC provider only
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: str
    disabled: bool = False
    oidc: bool = False  # signs in through the OIDC provider, named by its e-mail address


LOCAL_OWNER = Account(id=0, name="local", role="owner")  # the single-user lab's one person


def require(actor: Account, *roles: str, action: str) -> None:
    """Refuse `action` unless the actor has one of `roles`."""
    if actor.role not in roles or actor.disabled:
        raise AccessError(f"{actor.name} ({actor.role}) may not {action}.",
                          f"Ask an owner; this needs the role {' or '.join(roles)}.")


def accounts_exist(store: Store) -> bool:
    """False for the single-user lab (no account configured)."""
    return bool(store.scalar("SELECT 1 FROM accounts LIMIT 1"))


def _account(row) -> Account:
    return Account(id=row["id"], name=row["name"], role=row["role"],
                   disabled=bool(row["disabled"]), oidc=row["password_hash"] == OIDC)


def get_account(store: Store, name: str) -> Account:
    row = store.query_one("SELECT * FROM accounts WHERE name=?", (name,))
    if row is None:
        names = [r["name"] for r in store.query("SELECT name FROM accounts ORDER BY id")]
        raise NotFoundError(f"No account '{name}'.",
                            f"Use one of: {', '.join(names) or '(none yet)'}.")
    return _account(row)


def list_accounts(store: Store) -> list[Account]:
    return [_account(r) for r in store.query("SELECT * FROM accounts ORDER BY id")]


def judging_accounts(store: Store) -> list[Account]:
    """The enabled accounts that may judge; the local owner when there is no account."""
    if not accounts_exist(store):
        return [LOCAL_OWNER]
    return [a for a in list_accounts(store) if a.role in JUDGING_ROLES and not a.disabled]


def add_account(store: Store, actor: Account, name: str, password: str | None,
                role: str = "annotator", *, oidc: bool = False) -> Account:
    """A new account. The first one must be an owner (who then runs the lab's accounts). An
    `oidc` account is the e-mail address the provider signs in, and has no password."""
    require(actor, "owner", action="add accounts")
    name = (name or "").strip()
    if oidc:
        name = name.lower()
        local, _, domain = name.partition("@")
        if not local or "." not in domain or not _usable(local + domain):
            raise DataError(f"'{name}' is not an e-mail address.",
                            "An account that signs in with the OIDC provider is named by the "
                            "e-mail address the provider gives, e.g. ann@uni.edu.")
        if password:
            raise DataError("An OIDC account has no password.",
                            "Leave the password out: the provider checks who signs in.")
    elif not name or not _usable(name):
        raise DataError(f"Account name '{name}' is not usable.",
                        "Use letters, digits, '-', '_' or '.'.")
    if role not in ROLES:
        raise DataError(f"Role '{role}' is unknown.", f"Use one of: {', '.join(ROLES)}.")
    if not oidc and len(password or "") < MIN_PASSWORD:
        raise DataError(f"The password is shorter than {MIN_PASSWORD} characters.",
                        "Choose a longer one.")
    hashed = OIDC if oidc else _hasher.hash(password)
    with store.write() as conn:
        if role != "owner" and not conn.execute("SELECT 1 FROM accounts LIMIT 1").fetchone():
            raise DataError("The first account must be an owner.",
                            f"Add an owner first (role owner), then '{name}'.")
        if conn.execute("SELECT 1 FROM accounts WHERE name=?", (name,)).fetchone():
            raise DataError(f"An account named '{name}' exists.", "Choose another name.")
        conn.execute("INSERT INTO accounts(name, role, password_hash, created) VALUES(?,?,?,?)",
                     (name, role, hashed, now()))
    return get_account(store, name)


def _usable(name: str) -> bool:
    return name.replace("-", "").replace("_", "").replace(".", "").isalnum()


def disable_account(store: Store, actor: Account, name: str) -> Account:
    """A disabled account cannot log in, and its sessions end now."""
    require(actor, "owner", action="disable accounts")
    account = get_account(store, name)
    with store.write() as conn:
        conn.execute("UPDATE accounts SET disabled=1 WHERE id=?", (account.id,))
        conn.execute("DELETE FROM account_sessions WHERE account_id=?", (account.id,))
    return get_account(store, name)


def login(store: Store, name: str, password: str) -> str:
    """A session token for a right name and password. After MAX_ATTEMPTS failures in a row the
    account refuses every attempt (even right ones) for LOCKOUT_S."""
    refused = AccessError("Wrong name or password.", "Check both, or ask an owner.")
    row = store.query_one("SELECT * FROM accounts WHERE name=?", ((name or "").strip(),))
    if row is None:
        raise refused
    t = now()
    if row["locked_until"] and row["locked_until"] > t:
        minutes = int((row["locked_until"] - t) // 60) + 1
        raise AccessError(f"Too many failed logins for '{row['name']}'.",
                          f"Try again in {minutes} minute(s), or ask an owner.")
    if row["disabled"]:
        raise AccessError(f"The account '{row['name']}' is disabled.", "Ask an owner.")
    try:
        _hasher.verify(row["password_hash"], password or "")
    except (VerificationError, InvalidHashError):
        failed = row["failed_logins"] + 1
        locked = t + LOCKOUT_S if failed >= MAX_ATTEMPTS else None
        with store.write() as conn:
            conn.execute("UPDATE accounts SET failed_logins=?, locked_until=? WHERE id=?",
                         (0 if locked else failed, locked, row["id"]))
        raise refused from None
    return _new_session(store, row["id"])


def oidc_login(store: Store, email: str | None, verified: bool = True) -> str:
    """A session token for the e-mail address the OIDC provider signed in (Streamlit checked
    the provider's signed identity token). Only an OIDC account of that address may use it:
    the provider proves who someone is, the lab's owner decides what they may do."""
    address = (email or "").strip().lower()
    if not address:
        raise AccessError("The sign-in provider gave no e-mail address.",
                          "Ask the provider's admin to include the 'email' scope.")
    if not verified:
        raise AccessError(f"The provider has not verified {address}.",
                          "Verify the address with the provider, then sign in again.")
    row = store.query_one("SELECT * FROM accounts WHERE name=?", (address,))
    if row is None or row["password_hash"] != OIDC:
        raise AccessError(f"{address} has no account in this lab.",
                          f"Ask an owner to add it: `python -m dpo_core annotate accounts add "
                          f"{address} --oidc --role annotator`.")
    if row["disabled"]:
        raise AccessError(f"The account '{address}' is disabled.", "Ask an owner.")
    return _new_session(store, row["id"])


def _new_session(store: Store, account_id: int) -> str:
    token, t = secrets.token_urlsafe(32), now()
    with store.write() as conn:
        conn.execute("UPDATE accounts SET failed_logins=0, locked_until=NULL WHERE id=?",
                     (account_id,))
        conn.execute("DELETE FROM account_sessions WHERE expires<?", (t,))
        conn.execute("INSERT INTO account_sessions(token_hash, account_id, created, expires) "
                     "VALUES(?,?,?,?)", (_digest(token), account_id, t, t + SESSION_S))
    return token


def session_account(store: Store, token: str | None) -> Account:
    """The account of a live session; an expired, ended or unknown one is refused."""
    row = store.query_one("SELECT a.*, s.expires FROM account_sessions s JOIN accounts a "
                          "ON a.id=s.account_id WHERE s.token_hash=?", (_digest(token or ""),))
    if row is None or row["expires"] <= now() or row["disabled"]:
        raise AccessError("The session has ended.", "Log in again.")
    return _account(row)


def logout(store: Store, token: str) -> None:
    with store.write() as conn:
        conn.execute("DELETE FROM account_sessions WHERE token_hash=?", (_digest(token),))


def _digest(token: str) -> str:
    """Tokens are stored hashed: a copy of the database opens no session."""
    return hashlib.sha256(token.encode()).hexdigest()
