"""The journey of issue 16, as a user runs it from the command line: a conversational hub-style
file (multi-turn prompts with a system turn) imports, previews, trains a tiny run whose frozen
pairs are chat-template text with no JSON punctuation, evaluates, and exports back to the
identical lists."""

from __future__ import annotations

import json

import pytest
import yaml

from dpo_core.cli.main import main
from dpo_core.store import open_store
from tests.data.conftest import SYSTEM, hub_rows

JSON_MARKS = ('"role"', '"content"', "[{", "}]", "{'role'")


@pytest.mark.slow
def test_a_hub_conversation_file_imports_previews_trains_evaluates_and_exports_back(
        lab, hub_file, tmp_path, capsys):
    assert main(["data", "import", str(hub_file), "--dataset", "hub", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == "conversational"

    assert main(["data", "show", "hub", "--rendered", "--model", "builtin:tiny"]) == 0
    preview = capsys.readouterr().out
    assert f"<|im_start|>system\n{SYSTEM}<|im_end|>" in preview
    assert not any(mark in preview for mark in JSON_MARKS)

    assert main(["data", "split", "hub", "--eval-size", "4", "--first", "--into", "hub-split"]) == 0
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "name": "conversations", "model": "builtin:tiny", "dataset": "hub-split",
        "method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
        "max_length": 160, "max_prompt_length": 96, "logging_steps": 1, "save_steps": 2,
        "sample_prompts": 1, "sample_max_new_tokens": 4}))
    capsys.readouterr()
    assert main(["train", str(config), "--json"]) == 0, capsys.readouterr().err
    run_id = open_store().query_one("SELECT id FROM runs WHERE kind='train'")["id"]
    run_dir = lab.runs / run_id
    frozen = [json.loads(line) for line in
              (run_dir / "pairs.train.jsonl").read_text().splitlines()]
    assert len(frozen) == 8
    for row in frozen:
        for key in ("prompt", "chosen", "rejected"):
            assert not any(mark in row[key] for mark in JSON_MARKS), row[key]
    first = hub_rows()[0]
    assert frozen[0]["prompt"] == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{first['prompt'][1]['content']}<|im_end|>\n"
        f"<|im_start|>assistant\n{first['prompt'][2]['content']}<|im_end|>\n"
        f"<|im_start|>user\n{first['prompt'][3]['content']}<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert frozen[0]["chosen"] == f"{first['chosen'][0]['content']}<|im_end|>"

    capsys.readouterr()
    assert main(["eval", "--model", f"run:{run_id}", "--dataset", "hub-split",
                 "--json"]) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert (result[0] if isinstance(result, list) else result)["n"] == 4

    out = tmp_path / "back.json"
    assert main(["data", "export", "hub-split", "--out", str(out)]) == 0
    assert out.read_bytes() == hub_file.read_bytes()
    assert json.loads(out.read_text()) == hub_rows()
