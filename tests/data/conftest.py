"""Fixtures of the data tests: conversational rows in the hub's shape and the tiny tokenizer."""

from __future__ import annotations

import json

import pytest

SYSTEM = "You answer in one short sentence."


def hub_rows() -> list[dict]:
    """Rows as HH-RLHF / UltraFeedback-binarized / TRL's examples have them: a multi-turn
    prompt with a system turn, one assistant message per reply."""
    rows = []
    for i in range(12):
        rows.append({
            "prompt": [{"role": "system", "content": SYSTEM},
                       {"role": "user", "content": f"What colour is ball {i}?"},
                       {"role": "assistant", "content": "Which ball do you mean?"},
                       {"role": "user", "content": f"The one under chair {i}."}],
            "chosen": [{"role": "assistant", "content": f"Ball {i} is red."}],
            "rejected": [{"role": "assistant", "content": "I do not know, go away."}]})
    return rows


@pytest.fixture
def hub_file(tmp_path):
    """The rows written the way `datasets`/json.dump(indent=2) write a JSON list."""
    path = tmp_path / "hub_style.json"
    path.write_text(json.dumps(hub_rows(), ensure_ascii=False, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from dpo_core.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))
