"""The workspace store: one SQLite file (WAL) holding datasets, pairs, edits, runs, metrics and evals.

Writes go through `Store.write()`, which takes the write lock up front (BEGIN IMMEDIATE) so two
processes never deadlock half-way through a transaction. Migrations are numbered in code and run
on open; a store written by a newer version of the lab is refused rather than misread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreError
from .migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 30_000

LATEST_VERSION = MIGRATIONS[-1][0]


class Store:
    """A connection to the workspace database. Safe to share between threads of one process."""

    def __init__(self, path: str | Path, *, migrate_to: int | None = LATEST_VERSION):
        self.path = str(path)
        try:
            self.conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the store {self.path}: {exc}.",
                             "Check that the workspace folder exists and is writable.") from exc
        self.conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        if migrate_to is not None:
            self.migrate(migrate_to)

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock up front; nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """Run a read query and return all rows."""
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        with self._lock:
            return self.conn.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: tuple | dict = ()):
        row = self.query_one(sql, params)
        return None if row is None else row[0]

    # -- migrations -----------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.scalar("PRAGMA user_version"))

    def migrate(self, target: int = LATEST_VERSION) -> int:
        """Apply every numbered migration above the current level, each in its own transaction."""
        current = self.version
        if current > LATEST_VERSION:
            raise StoreError(
                f"The store {self.path} is at migration {current}, newer than this code "
                f"knows ({LATEST_VERSION}).", "Upgrade DPO Lab, or point DPO_LAB_HOME elsewhere.")
        for number, sql in MIGRATIONS:
            if current < number <= target:
                with self.write() as conn:
                    for statement in _split_sql(sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={number}")
                current = number
        return current

    # -- small helpers --------------------------------------------------------------------
    def get_setting(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM settings WHERE key=?", (key,))
        return default if value is None else value

    def set_setting(self, key: str, value: str) -> None:
        with self.write() as conn:
            conn.execute("INSERT INTO settings(key, value) VALUES(?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def delete_setting(self, key: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM settings WHERE key=?", (key,))

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements, buf = [], ""
    for line in script.strip().splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def now() -> float:
    return time.time()


def dumps(value) -> str:
    """JSON for store columns: compact, unicode kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(path: str | Path | None = None) -> Store:
    """The store of the workspace (or at `path`), opened once per process and migrated."""
    if path is None:
        from .workspace import get_workspace

        path = get_workspace().db_path
    key = str(Path(path).resolve()) if str(path) != ":memory:" else ":memory:"
    if key == ":memory:":
        return Store(":memory:")
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            Path(key).parent.mkdir(parents=True, exist_ok=True)
            store = _stores[key] = Store(key)
        return store


def forget_stores() -> None:
    """Close cached stores (tests switch workspaces between cases)."""
    with _stores_lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
