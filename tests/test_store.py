"""The store: WAL, migrations that keep rows, transactions that roll back whole."""

import sqlite3

import pytest

from dpo_core.data.datasets import Pair, create_dataset, insert_pairs, list_datasets
from dpo_core.errors import StoreError
from dpo_core.store import LATEST_VERSION, MIGRATIONS, Store


def test_fresh_store_is_wal_and_at_latest_migration(workspace):
    store = Store(workspace.db_path)
    assert store.version == LATEST_VERSION
    assert store.scalar("PRAGMA journal_mode") == "wal"
    assert store.scalar("PRAGMA busy_timeout") >= 1000


def test_old_store_is_upgraded_without_losing_rows(workspace):
    old = Store(workspace.db_path, migrate_to=1)
    assert old.version == 1
    ds = create_dataset(old, "kept")
    insert_pairs(old, ds.id, [Pair("*MOT: hi .", "*CHI: hi !", "*CHI: no .")] * 3)
    old.close()

    upgraded = Store(workspace.db_path)
    assert upgraded.version == LATEST_VERSION == MIGRATIONS[-1][0]
    assert list_datasets(upgraded)[0]["pairs"] == 3
    assert upgraded.scalar("SELECT COUNT(*) FROM runs") == 0  # later tables exist
    hits = upgraded.query("SELECT rowid FROM pairs_fts WHERE pairs_fts MATCH 'hi'")
    assert len(hits) == 3  # the search index survived too


def test_store_from_newer_code_is_refused(workspace):
    conn = sqlite3.connect(workspace.db_path)
    conn.execute(f"PRAGMA user_version={LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this code"):
        Store(workspace.db_path)


def test_failed_write_rolls_back_everything(memory_store):
    ds = create_dataset(memory_store, "d")
    with pytest.raises(RuntimeError):
        with memory_store.write() as conn:
            conn.execute("INSERT INTO pairs(dataset_id, prompt, chosen, rejected, created, updated)"
                         " VALUES(?, 'p', 'c', 'r', 0, 0)", (ds.id,))
            raise RuntimeError("boom")
    assert memory_store.scalar("SELECT COUNT(*) FROM pairs") == 0


def test_duplicate_dataset_name_is_a_clear_error(memory_store):
    from dpo_core.errors import DataError

    create_dataset(memory_store, "same")
    with pytest.raises(DataError, match="already exists"):
        create_dataset(memory_store, "same")
