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

BUSY_TIMEOUT_MS = 30_000

# Each migration is (version, sql). Never edit a released one: add the next number.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            parent_id INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
            recipe_json TEXT NOT NULL DEFAULT '{}',
            prompt_format TEXT NOT NULL DEFAULT '{}',
            description TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE pairs (
            id INTEGER PRIMARY KEY,
            dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            prompt TEXT NOT NULL,
            chosen TEXT NOT NULL,
            rejected TEXT NOT NULL,
            split TEXT NOT NULL DEFAULT 'train',
            source TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '[]',
            flags TEXT NOT NULL DEFAULT '[]',
            note TEXT NOT NULL DEFAULT '',
            meta_json TEXT NOT NULL DEFAULT '{}',
            version INTEGER NOT NULL DEFAULT 1,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX pairs_by_dataset ON pairs(dataset_id, deleted, id);
        CREATE INDEX pairs_by_split ON pairs(dataset_id, split, id);
        CREATE VIRTUAL TABLE pairs_fts USING fts5(
            prompt, chosen, rejected, content='pairs', content_rowid='id'
        );
        CREATE TRIGGER pairs_ai AFTER INSERT ON pairs BEGIN
            INSERT INTO pairs_fts(rowid, prompt, chosen, rejected)
            VALUES (new.id, new.prompt, new.chosen, new.rejected);
        END;
        CREATE TRIGGER pairs_ad AFTER DELETE ON pairs BEGIN
            INSERT INTO pairs_fts(pairs_fts, rowid, prompt, chosen, rejected)
            VALUES ('delete', old.id, old.prompt, old.chosen, old.rejected);
        END;
        CREATE TRIGGER pairs_au AFTER UPDATE OF prompt, chosen, rejected ON pairs BEGIN
            INSERT INTO pairs_fts(pairs_fts, rowid, prompt, chosen, rejected)
            VALUES ('delete', old.id, old.prompt, old.chosen, old.rejected);
            INSERT INTO pairs_fts(rowid, prompt, chosen, rejected)
            VALUES (new.id, new.prompt, new.chosen, new.rejected);
        END;
        CREATE TABLE edits (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL,
            dataset_id INTEGER NOT NULL,
            at REAL NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            action TEXT NOT NULL,
            version INTEGER NOT NULL,
            before_json TEXT,
            after_json TEXT,
            undone INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX edits_by_pair ON edits(pair_id, id);
        CREATE INDEX edits_by_dataset ON edits(dataset_id, id);
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    (
        2,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL DEFAULT 'train',
            status TEXT NOT NULL DEFAULT 'queued',
            config_json TEXT NOT NULL DEFAULT '{}',
            dataset_id INTEGER,
            run_dir TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            pid INTEGER,
            pgid INTEGER,
            proc_start REAL,
            host TEXT NOT NULL DEFAULT '',
            heartbeat REAL,
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER NOT NULL DEFAULT 0,
            error_kind TEXT NOT NULL DEFAULT '',
            error_text TEXT NOT NULL DEFAULT '',
            resumed_from TEXT NOT NULL DEFAULT '',
            result_json TEXT NOT NULL DEFAULT '{}',
            read_only INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX runs_by_status ON runs(status, created);
        CREATE TABLE metrics (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            split TEXT NOT NULL DEFAULT 'train',
            key TEXT NOT NULL,
            value REAL,
            at REAL NOT NULL,
            UNIQUE(run_id, step, split, key)
        );
        CREATE INDEX metrics_by_run ON metrics(run_id, id);
        CREATE TABLE samples (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            completion TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX samples_by_run ON samples(run_id, id);
        """,
    ),
    (
        3,
        """
        CREATE TABLE evals (
            id INTEGER PRIMARY KEY,
            job_id TEXT,
            model_spec TEXT NOT NULL,
            run_id TEXT,
            dataset_id INTEGER,
            split TEXT NOT NULL DEFAULT '',
            method TEXT NOT NULL,
            metrics_json TEXT NOT NULL DEFAULT '{}',
            at REAL NOT NULL
        );
        CREATE TABLE eval_results (
            eval_id INTEGER NOT NULL,
            pair_id INTEGER,
            item TEXT NOT NULL DEFAULT '',
            chosen_score REAL,
            rejected_score REAL,
            correct INTEGER,
            detail_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX eval_results_by_eval ON eval_results(eval_id);
        CREATE TABLE votes (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            left_spec TEXT NOT NULL,
            right_spec TEXT NOT NULL,
            prompt TEXT NOT NULL,
            left_text TEXT NOT NULL,
            right_text TEXT NOT NULL,
            verdict TEXT NOT NULL,
            pair_id INTEGER,
            meta_json TEXT NOT NULL DEFAULT '{}'
        );
        """,
    ),
    (
        4,
        """
        CREATE TABLE sweeps (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            config_json TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'created',
            created REAL NOT NULL,
            job_id TEXT,
            baseline_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE sweep_trials (
            sweep_id TEXT NOT NULL,
            run_id TEXT,
            number INTEGER NOT NULL,
            params_json TEXT NOT NULL DEFAULT '{}',
            value REAL,
            status TEXT NOT NULL DEFAULT 'running',
            gain_json TEXT NOT NULL DEFAULT '{}',
            UNIQUE(sweep_id, number)
        );
        """,
    ),
    (
        5,
        """
        CREATE INDEX metrics_last ON metrics(run_id, key, id);
        """,
    ),
    (
        6,
        # the Data page's length sorts (edits.SORTS), keyset-paged like the id order
        """
        CREATE INDEX pairs_by_prompt_len ON pairs(dataset_id, deleted, length(prompt), id);
        CREATE INDEX pairs_by_chosen_len ON pairs(dataset_id, deleted, length(chosen), id);
        CREATE INDEX pairs_by_rejected_len ON pairs(dataset_id, deleted, length(rejected), id);
        """,
    ),
]

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
