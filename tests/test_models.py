"""Model specs, the tiny model and prompt formats."""

import json

import pytest
import torch

from dpo_core.errors import ModelError
from dpo_core.formats import CHILDES_FORMAT, PromptFormat
from dpo_core.models import READY_FILE, prepare_tiny_model, resolve_model, resolve_path


def test_tiny_model_is_deterministic(tmp_path, tiny_model_dir):
    again = prepare_tiny_model(tmp_path / "tiny")
    a = resolve_model(str(tiny_model_dir)).model.state_dict()
    b = resolve_model(str(again)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((again / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    assert list(again.glob("*.safetensors")), "weights are saved as safetensors"


def test_builtin_tiny_resolves_in_workspace(workspace):
    loaded = resolve_model("builtin:tiny")
    assert (workspace.models / "tiny" / READY_FILE).is_file()
    assert loaded.prompt_format.kind == "chat"
    assert loaded.tokenizer.pad_token is not None
    text = loaded.prompt_format.render_prompt("what is that ?", loaded.tokenizer)
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("spec, message", [
    ("builtin:nope", "Unknown builtin"),
    ("./no/such/folder", "neither a folder"),
    ("run:missing-run", "No run 'missing-run'"),
])
def test_bad_specs_say_what_to_use(workspace, spec, message):
    with pytest.raises(ModelError, match=message) as err:
        resolve_path(spec)
    assert "builtin:smollm2-135m-instruct" in str(err.value) or "completed run" in str(err.value)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        resolve_path(str(tmp_path))


def test_plain_format_renders_childes_turns():
    fmt = CHILDES_FORMAT
    assert fmt.render_prompt("*MOT: what is that ?") + fmt.render_reply("*CHI: a ball .") == \
        "*MOT: what is that ? *CHI: a ball ."
    assert fmt.user_turn("what is that ?") == "*MOT: what is that ?"
    assert fmt.render_conversation([], "what is that ?") == "*MOT: what is that ? *CHI:"
    assert PromptFormat.from_dict(fmt.to_dict()) == fmt


def test_chat_format_closes_the_reply_with_end_of_turn(tiny_model_dir):
    loaded = resolve_model(str(tiny_model_dir))
    assert loaded.prompt_format.render_reply("hi", loaded.tokenizer) == "hi<|im_end|>"
