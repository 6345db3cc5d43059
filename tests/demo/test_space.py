"""The Gradio Space demo: export a tiny finished run, start the exported app, drive and probe it."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dpo_core.demo.config import load_config
from dpo_core.models import RUN_MODEL_FILE
from dpo_core.publish.sample_run import EVAL_PROMPTS, RUN_ID, make_sample_run
from tests.demo.space_support import LIMITS, ask, text_of
from tests.demo.space_support import client as connect


# ---------------------------------------------------------------------------------------------
# Export (no server)
# ---------------------------------------------------------------------------------------------
def test_export_writes_a_self_contained_space_folder(workspace_with_tiny, store, tmp_path):
    import gradio

    from dpo_core.publish.space_export import export_space

    make_sample_run(workspace_with_tiny, store)
    out = tmp_path / "space"
    result = export_space(store, RUN_ID, out, limits=LIMITS)

    for name in ("app.py", "README.md", "requirements.txt", "space_config.json",
                 "dpo_demo/app.py", "dpo_demo/engine.py", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "base/config.json",
                 "base/model.safetensors"):
        assert name in result.files, name
    assert not any(f.endswith((".db", ".env", RUN_MODEL_FILE)) for f in result.files)
    # the decode kernel travels with the demo package (no other dpo_core module is needed)
    assert "def use_small_rows_kernel" in (out / "dpo_demo" / "kernels.py").read_text()
    readme = (out / "README.md").read_text()
    header = readme.split("---")[1]
    assert "sdk: gradio" in header and f"sdk_version: {gradio.__version__}" in header
    assert "app_file: app.py" in header and "license: apache-2.0" in header
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert f"gradio=={gradio.__version__}" in reqs
    assert any(r.startswith("torch==") for r in reqs) and any(r.startswith("peft==") for r in reqs)
    config = load_config(out / "space_config.json")
    assert (config.base, config.adapter, config.kind) == ("base", "adapter", "lora")
    assert config.examples == EVAL_PROMPTS
    assert config.run["results"] == [{"metric": "eval_rewards/accuracies (training's eval split)",
                                      "value": 0.75, "n": len(EVAL_PROMPTS)}]
    assert config.baseline_note == ""  # the evaluated base is in the folder
    assert config.prompt_format["kind"] == "chat"
    for module in (out / "dpo_demo").glob("*.py"):  # a Space has no dpo_core installed
        imports = re.findall(r"^\s*(?:from|import)\s+(\S+)", module.read_text(), re.M)
        assert not [i for i in imports if i.startswith(("dpo_core", ".."))], module
    # nothing names a folder of the exporting machine; the base is in the folder: no hub note
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "base"
    assert not [f for f in out.rglob("*.json") if str(workspace_with_tiny.home) in f.read_text()]
    assert result.note == ""


def test_a_hub_base_export_says_how_to_run_it_offline(workspace_with_tiny, store, tmp_path,
                                                      capsys, monkeypatch):
    from dpo_core.cli.main import main
    from dpo_core.models import DEFAULT_SPEC

    make_sample_run(workspace_with_tiny, store)
    assert main(["export-space", RUN_ID[:-1], "--out", str(tmp_path / "s"),  # a unique prefix
                 "--base", DEFAULT_SPEC]) == 0
    out = capsys.readouterr().out
    assert "HuggingFaceTB/SmolLM2-135M-Instruct from the Hugging Face hub" in out
    assert "DPO_DEMO_BASE=" in out and "--copy-base" in out
    config_file = tmp_path / "s" / "space_config.json"
    assert load_config(config_file).base == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert json.loads((tmp_path / "s" / "adapter" / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "DPO_DEMO_BASE" in (tmp_path / "s" / "README.md").read_text()
    monkeypatch.setenv("DPO_DEMO_BASE", "/somewhere/local-copy")
    assert load_config(config_file).base == "/somewhere/local-copy"


def test_export_space_cli_and_its_errors(workspace_with_tiny, store, tmp_path, capsys):
    from dpo_core.cli.main import main

    make_sample_run(workspace_with_tiny, store)
    assert main(["export-space", RUN_ID, "--out", str(tmp_path / "s"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == RUN_ID
    assert main(["export-space", RUN_ID, "--out", str(tmp_path / "s")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["export-space", "nope", "--out", str(tmp_path / "t")]) == 2
    assert "No run 'nope'" in capsys.readouterr().err
    with store.write() as conn:
        conn.execute("UPDATE runs SET status='running' WHERE id=?", (RUN_ID,))
    assert main(["export-space", RUN_ID, "--out", str(tmp_path / "u")]) == 2
    assert "is running, not completed" in capsys.readouterr().err


def test_a_full_weights_run_exports_and_both_sides_answer(workspace_with_tiny, store, tmp_path):
    """kind 'full': the tuned side is its own model folder; the engine answers on both sides."""
    import shutil

    from dpo_core.demo.engine import Engine, Settings
    from dpo_core.publish.space_export import export_space

    run_dir = make_sample_run(workspace_with_tiny, store)
    shutil.rmtree(run_dir / "final")
    shutil.copytree(workspace_with_tiny.models / "tiny", run_dir / "final")
    (run_dir / "final" / RUN_MODEL_FILE).write_text(json.dumps({"base": "builtin:tiny",
                                                                "kind": "full"}))
    export_space(store, RUN_ID, tmp_path / "space", limits=LIMITS)
    config = load_config(tmp_path / "space" / "space_config.json")
    assert (config.kind, config.tuned, config.adapter) == ("full", "model", "")
    engine = Engine(config)
    for tuned in (False, True):
        meter: dict = {}
        answers = list(engine.stream(tuned, [], "what is that ?", Settings(0.7, 0.95, 50, 5),
                                     meter))
        assert answers and 1 <= meter["new_tokens"] <= 5
    meter = {}
    *_, both = engine.stream_pair({"left": [], "right": []}, "what is that ?",
                                  Settings(0.7, 0.95, 50, 5), meter)  # two threads, together
    assert set(both) == {"left", "right"} and all(1 <= meter["new_tokens"][s] <= 5
                                                  for s in both)


def test_demo_format_renders_like_the_lab(tiny_model_dir):
    """The Space's copy of the prompt format gives the same text as dpo_core.formats."""
    from dpo_core.demo.engine import Format
    from dpo_core.formats import CHAT_FORMAT, CHILDES_FORMAT
    from dpo_core.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    history = [("what is that ?", "a ball .")]
    for lab in (CHAT_FORMAT, CHILDES_FORMAT):
        demo = Format.from_dict(lab.to_dict())
        assert demo.render(history, "and this ?", tok) == \
            lab.render_conversation(history, "and this ?", tok)
        assert demo.as_pair_prompt(history, "and this ?") == \
            lab.history_as_prompt(history, "and this ?")


def test_errors_shown_to_visitors_are_short_and_name_no_paths():
    import gradio as gr

    from dpo_core.demo.app import respond
    from dpo_core.demo.config import DemoConfig
    from dpo_core.demo.engine import Format

    class BrokenEngine:
        config = DemoConfig(base="b", adapter="a", limits=LIMITS)
        format = Format()

        def stream(self, *args, **kwargs):
            raise OSError("cannot read /home/someone/.dpo_lab/lab.db")

    with pytest.raises(gr.Error) as err:
        list(respond(BrokenEngine(), "hi", 0.7, 0.95, 50, 8, None))
    assert "/" not in str(err.value) and len(str(err.value)) < 80


def test_the_lab_never_imports_gradio():
    """Only dpo_core/demo/app.py imports gradio: the CLI (with export-space) loads without it."""
    code = ("import sys, dpo_core.cli.main as c; c.build_parser(); import dpo_core.publish.space_export; "
            "assert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# ---------------------------------------------------------------------------------------------
# The exported app, running
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_both_answers_come_back_and_a_vote_reimports_as_a_pair(space):
    from dpo_core.data.datasets import get_dataset, iter_pairs
    from dpo_core.data.importer import import_pairs

    client = connect(space)
    left, right, details = ask(client)
    assert [m["role"] for m in left] == [m["role"] for m in right] == ["user", "assistant"]
    assert text_of(left[0]) == text_of(right[0]) == "what is that ?"
    assert details["status"] == "done" and set(details["new_tokens"]) == {"left", "right"}
    answers = (text_of(left[1]), text_of(right[1]))

    status = client.predict(api_name="/vote_right")
    assert "saved" in status
    lines = (space.votes / "votes.jsonl").read_text().splitlines()
    vote = json.loads(lines[-1])
    assert (vote["prompt"], vote["chosen"], vote["rejected"], vote["verdict"]) == \
        ("what is that ?", answers[1], answers[0], "right")
    assert set(vote) >= {"models", "settings", "at"}
    assert "again" not in status and "first" in client.predict(api_name="/vote_left")  # once

    (space.votes / "one.jsonl").write_text(lines[-1] + "\n")
    import_pairs(space.store, space.votes / "one.jsonl", dataset="demo-votes")
    pair = next(iter_pairs(space.store, get_dataset(space.store, "demo-votes").id, "train"))
    assert (pair.prompt, pair.chosen, pair.rejected) == (vote["prompt"], vote["chosen"],
                                                          vote["rejected"])


@pytest.mark.slow
def test_tie_and_both_bad_are_kept_but_not_pairs(space):
    client = connect(space)
    ask(client)
    assert "saved" in client.predict(api_name="/vote_tie")
    tie = json.loads((space.votes / "votes-unranked.jsonl").read_text().splitlines()[-1])
    assert tie["verdict"] == "tie" and "chosen" not in tie and {"left", "right"} <= set(tie)


@pytest.mark.slow
def test_long_prompt_and_max_new_tokens_are_clamped_server_side(space):
    from gradio_client.exceptions import AppError

    client = connect(space)
    left, right, details = ask(client, prompt="ball " * 400,
                                max_new_tokens=LIMITS.max_new_tokens, temperature=1.5)
    assert details["prompt_chars"] == LIMITS.max_prompt_chars and details["prompt_cut"]
    assert len(text_of(left[0])) == LIMITS.max_prompt_chars
    assert details["max_new_tokens"] == LIMITS.max_new_tokens
    assert max(details["new_tokens"].values()) <= LIMITS.max_new_tokens
    # values beyond the sliders never reach the model: gradio refuses them on the server
    with pytest.raises(AppError, match="greater than maximum"):
        ask(client, max_new_tokens=100_000)
    with pytest.raises(AppError, match="greater than maximum"):
        ask(client, temperature=50)


def test_settings_are_clamped_whatever_arrives():
    """The app's own clamp (behind gradio's slider check): junk, NaN and huge values."""
    from dpo_core.demo.app import clamp_prompt, clamp_settings
    from dpo_core.demo.config import DemoConfig

    config = DemoConfig(base="b", adapter="a", limits=LIMITS)
    s = clamp_settings(config, float("nan"), 9.0, "x", 10**9)
    assert (s.temperature, s.top_p, s.top_k, s.max_new_tokens) == (0.05, 1.0, 0, 12)
    s = clamp_settings(config, 99, -1, 10**6, -5)
    assert (s.temperature, s.top_p, s.top_k, s.max_new_tokens) == (1.5, 0.05, 200, 1)
    assert clamp_prompt(config, "x" * 5000) == ("x" * 200, True)
    assert clamp_prompt(config, None) == ("", False)


def test_the_chat_shows_answers_exactly_as_the_vote_saves_them():
    """Tabs, indentation and blank lines reach the visitor unchanged (gradio would clean them)."""
    import gradio as gr

    from dpo_core.demo.app import as_messages

    reply = "\tdef f():\n        return 1\n\n  end"
    shown = gr.Chatbot().postprocess(as_messages([("  what is\tthat ?", reply)]))
    texts = [m.content[0].text if isinstance(m.content, list) else m.content.text
             for m in shown.root]
    assert texts == ["  what is\tthat ?", reply]


@pytest.mark.slow
def test_history_is_capped_server_side(space):
    client = connect(space)
    for i in range(4):
        left, _, details = ask(client, prompt=f"turn {i}", max_new_tokens=2)
    assert details["history_turns"] == LIMITS.max_history_turns
    assert [text_of(m) for m in left if m["role"] == "user"] == ["turn 1", "turn 2", "turn 3"]


def _raw_get(space, path: str, method: str = "GET") -> tuple[int, bytes]:
    """A request whose path goes out byte for byte (no client-side normalisation of ../)."""
    conn = http.client.HTTPConnection("127.0.0.1", space.port, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


@pytest.mark.slow
def test_files_and_traversal_are_refused(space):
    db = str(space.ws.db_path)
    out = space.folder
    secrets = [b"root:x:0", b"SQLite format", b"secret-do-not-leak", b"max_prompt_chars",
               b"from dpo_demo", b"adapter_model"]
    paths = [f"/gradio_api/file={db}", f"/file={db}", "/gradio_api/file=/etc/passwd",
             "/gradio_api/file=%2Fetc%2Fpasswd", "/gradio_api/file=../../../../etc/passwd",
             f"/gradio_api/file={out}/space_config.json", f"/gradio_api/file={out}/.env",
             f"/gradio_api/file={out}/app.py", f"/gradio_api/file={out}/adapter/adapter_config.json",
             "/static/../../../../../../etc/passwd", "/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
             "/space_config.json", "/app.py", "/.env", "/gradio_api/file=space_config.json",
             "/gradio_api/proxy=http://127.0.0.1/", "/gradio_api/file=http://127.0.0.1:1/x",
             "/gradio_api/static/%2e%2e/%2e%2e/etc/passwd", "/../../etc/passwd"]
    for path in paths:
        status, body = _raw_get(space, path)
        assert status != 200, path
        assert not any(s in body for s in secrets), path
        assert str(out.parent).encode() not in body, path
    status, _ = _raw_get(space, "/gradio_api/upload", "POST")
    assert status != 200
    status, body = _raw_get(space, "/")  # while the page itself is served
    assert status == 200 and b"<html" in body.lower()
    for path in ("/config", "/gradio_api/info"):  # and what it describes names no local path
        status, body = _raw_get(space, path)
        assert status == 200 and str(out.parent).encode() not in body, path


@pytest.mark.slow
def test_a_burst_beyond_the_queue_is_refused_while_the_demo_keeps_serving(space):
    from gradio_client import Client

    clients = [Client(space.url, verbose=False) for _ in range(4)]

    def one(i: int) -> str:
        try:
            clients[i % 4].predict("burst", 0.7, 0.95, 50, LIMITS.max_new_tokens,
                                   api_name="/generate")
            return "ok"
        except Exception as exc:  # the client raises for a refused job
            return f"refused: {exc}"

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(24)))
    refused = [r for r in results if r.startswith("refused")]
    assert refused and any("queue" in r.lower() and "full" in r.lower() for r in refused), results
    assert results.count("ok") >= 1
    _, _, details = ask(connect(space))  # still serving
    assert details["status"] == "done"
