"""Shared fixtures: a temporary workspace, its store, and the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_core.models import prepare_tiny_model
from dpo_core.store import Store, forget_stores
from dpo_core.workspace import get_workspace


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh workspace in a temporary folder ($DPO_LAB_HOME points at it)."""
    home = tmp_path / "lab"
    monkeypatch.setenv("DPO_LAB_HOME", str(home))
    forget_stores()
    ws = get_workspace(home)
    yield ws
    forget_stores()


@pytest.fixture
def store(workspace):
    s = Store(workspace.db_path)
    yield s
    s.close()


@pytest.fixture
def memory_store():
    s = Store(":memory:")
    yield s
    s.close()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A prepared builtin:tiny folder, built once per test session."""
    return prepare_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def workspace_with_tiny(workspace, tiny_model_dir):
    """A workspace whose builtin:tiny is already prepared (copied, so runs may write beside it)."""
    import shutil

    shutil.copytree(tiny_model_dir, workspace.models / "tiny")
    return workspace


@pytest.fixture
def lab(workspace_with_tiny, monkeypatch):
    """A workspace with builtin:tiny whose app start prepares nothing (pages and CLI tests)."""
    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    return workspace_with_tiny


@pytest.fixture(scope="session")
def default_model_home(tmp_path_factory) -> Path:
    """A workspace home with the real default model prepared once per session (slow tests)."""
    from dpo_core.models import prepare_default_model
    from dpo_core.workspace import get_workspace

    home = tmp_path_factory.mktemp("default-home")
    prepare_default_model(get_workspace(home))
    return home


@pytest.fixture
def workspace_with_default(workspace, default_model_home):
    """A fresh workspace that links the session's prepared default model (no re-preparation)."""
    src = default_model_home / "models" / "smollm2-135m-instruct"
    (workspace.models / "smollm2-135m-instruct").symlink_to(src, target_is_directory=True)
    return workspace
