"""Annotation tests hash with argon2's cheapest settings: the same algorithm and format, a
fraction of the time (the lab's own settings are argon2-cffi's defaults)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from dpo_core.annotation import accounts


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch):
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))
