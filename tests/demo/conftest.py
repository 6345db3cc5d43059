"""The exported Space, served: one server per test module that asks for `space`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dpo_core.publish.sample_run import RUN_ID, make_sample_run
from dpo_core.store import Store, forget_stores
from dpo_core.workspace import get_workspace
from tests.demo.space_support import LIMITS, SpaceServer


@contextmanager
def exported_space(root: Path, tiny_model_dir: Path) -> Iterator[tuple]:
    """A lab workspace under `root` with a finished tiny LoRA run, exported to root/out:
    yields (workspace, store, Space folder)."""
    from dpo_core.publish.space_export import export_space

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DPO_LAB_HOME", str(root / "lab"))
        forget_stores()
        ws = get_workspace(root / "lab")
        shutil.copytree(tiny_model_dir, ws.models / "tiny")
        store = Store(ws.db_path)
        make_sample_run(ws, store)
        export_space(store, RUN_ID, root / "out", limits=LIMITS)
        try:
            yield ws, store, root / "out"
        finally:
            store.close()
            forget_stores()


@pytest.fixture(scope="module")
def space(tmp_path_factory, tiny_model_dir):
    """An exported tiny run served by its own app.py (one server for the module's tests)."""
    root = tmp_path_factory.mktemp("space")
    with exported_space(root, tiny_model_dir) as (ws, store, out):
        (out / ".env").write_text("HF_TOKEN=secret-do-not-leak\n")
        server = SpaceServer(out, root / "votes")
        server.ws, server.store, server.votes = ws, store, root / "votes"
        yield server
        server.stop()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir):
    """An exported tiny LoRA run's Space folder (not served)."""
    with exported_space(tmp_path_factory.mktemp("exported"), tiny_model_dir) as (_, _, out):
        return out


@pytest.fixture(scope="module")
def engine(exported):
    """The exported folder's engine: the tiny base and its LoRA adapter, loaded once."""
    from dpo_core.demo.config import load_config
    from dpo_core.demo.engine import Engine

    return Engine(load_config(exported / "space_config.json"))
