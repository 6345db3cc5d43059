"""Helpers the tests share (fixtures live in conftest.py): paths, real data, builders of fake
finished runs and models, and a real `streamlit run` for the browser tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpo_core.data.datasets import Pair, create_dataset, insert_pairs
from dpo_core.formats import CHAT_FORMAT
from dpo_core.jobs.rows import insert_job
from dpo_core.models import FORMAT_FILE, RUN_MODEL_FILE, TINY_SPEC
from dpo_core.store import dumps, now, open_store
from dpo_core.sweeps.config import SweepConfig
from dpo_core.sweeps.control import create_sweep

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
JUDGE_PROMPT = "what is that ?"


def cli(home: Path | None, *args: str, env: dict | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    """`python -m dpo_core ARGS` as a user runs it, in the repository, on workspace `home`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    if home is not None:
        env["DPO_LAB_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "dpo_core", *args], capture_output=True,
                          text=True, env=env, cwd=str(REPO), **kwargs)


def tiny_config(**kw):
    """A RunConfig that trains builtin:tiny on the `toy` dataset in seconds (3 steps, LoRA r=4,
    a checkpoint every 2 steps, one 4-token sample)."""
    from dpo_core.training.config import LoraSettings, RunConfig

    base = dict(model="builtin:tiny", dataset="toy", max_steps=3, logging_steps=1, save_steps=2,
                per_device_train_batch_size=2, learning_rate=1e-3, max_length=64,
                max_prompt_length=32, sample_prompts=1, sample_max_new_tokens=4,
                lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    base.update(kw)
    return RunConfig(**base)


def wait_until(predicate, what: str, limit: float = 300.0):
    """The predicate's first truthy value; the ceiling only keeps a broken worker from hanging
    the suite (tests never assert on time)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is not present (../shared/data is outside the repo)")
    return path


ANSWERS = [("what is that ?", "it is a lovely ball !", "no ."),
           ("where is the dog ?", "there's a happy dog !", "bad truck ."),
           ("do you want some juice ?", "yes please , I love it .", "it's awful ."),
           ("what color is it ?", "it's a nice red .", "okay .")]


CHILD_ANSWERS = [("what is that ?", "it is a ball .", "I don't know."),
                 ("where is the dog ?", "there's a dog !", "the truck ."),
                 ("do you want some juice ?", "yes please .", "it's red ."),
                 ("what color is it ?", "it's red .", "okay .")]


def toy_dataset(store, train: int, eval: int = 0, name: str = "toy"):
    """A small dataset of child answers: `train` pairs in split train, then `eval` in eval."""
    ds = create_dataset(store, name)
    insert_pairs(store, ds.id, [Pair(f"{p} {i}", c, r, split="train" if i < train else "eval")
                                for i in range(train + eval)
                                for p, c, r in [CHILD_ANSWERS[i % 4]]])
    return ds


def add_pairs(store, name: str = "tiny-pairs", n: int = 24) -> None:
    """A small dataset of pairs whose chosen replies are the kind ones (2 of 3 in eval)."""
    ds = create_dataset(store, name)
    insert_pairs(store, ds.id, [Pair(f"{p} {i}", c, r, split="eval" if i % 3 else "train")
                                for i in range(n) for p, c, r in [ANSWERS[i % 4]]])


def make_lora_run(workspace, run_id: str = "lora1", fmt=CHAT_FORMAT) -> str:
    """A fake finished LoRA run of the tiny model whose answers differ from the base."""
    import torch
    from peft import LoraConfig, get_peft_model

    from dpo_core.models import resolve_model

    loaded = resolve_model(TINY_SPEC, workspace)
    base = loaded.model
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj",
                                                                                 "v_proj"]))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    final = workspace.runs / run_id / "final"
    model.save_pretrained(final)
    loaded.tokenizer.save_pretrained(final)  # as training does: final/ loads on its own
    (final / RUN_MODEL_FILE).write_text(json.dumps({"base": TINY_SPEC, "kind": "lora"}))
    (final / FORMAT_FILE).write_text(json.dumps(fmt.to_dict()))
    return record_finished_run(workspace, run_id, "lora")


def make_full_run(workspace, run_id: str = "full1") -> str:
    """A fake finished full fine-tune of the tiny model: its own weights, other answers."""
    import torch

    from dpo_core.models import resolve_model

    loaded = resolve_model(TINY_SPEC, workspace)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for param in loaded.model.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    final = workspace.runs / run_id / "final"
    loaded.model.save_pretrained(final)
    loaded.tokenizer.save_pretrained(final)
    (final / RUN_MODEL_FILE).write_text(json.dumps({"base": TINY_SPEC, "kind": "full"}))
    (final / FORMAT_FILE).write_text(json.dumps(CHAT_FORMAT.to_dict()))
    return record_finished_run(workspace, run_id, "full")


def record_finished_run(workspace, run_id: str, method: str, **config) -> str:
    """The store row of a finished run whose folder a test made by hand; returns `run:<id>`."""
    config = {"model": TINY_SPEC, "method": method, **config}
    with open_store(workspace.db_path).write() as conn:
        insert_job(conn, run_id, "train", run_id, config, str(workspace.runs / run_id),
                   status="completed", finished=now())
    return f"run:{run_id}"


def make_reward_model(folder: Path, tiny_model_dir: Path, favour: str | None = None) -> Path:
    """A tiny Llama reward model (num_labels=1) with the tiny tokenizer, saved to `folder`.

    With `favour`, the layers add nothing (o_proj and down_proj are zero), so the score is
    w . norm(embedding of the last token), and w is that normalized embedding for the last token
    of `favour`: replies ending like `favour` get the top reward.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None  # score `prompt\nreply`, so the last token is the reply's
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         num_labels=1, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    if favour is not None:
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            last = tok(f"{JUDGE_PROMPT}\n{favour}")["input_ids"][-1]
            hidden = model.model.norm(model.model.embed_tokens.weight[last][None])[0]
            model.score.weight.copy_(hidden[None])
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def recorded_sweep(store, dataset_sweep: bool = False) -> str:
    """A finished sweep written straight into the store: 4 completed trials and 1 failed."""
    params = {"dataset": ["noise-0", "noise-50"]} if dataset_sweep else {
        "learning_rate": {"distribution": "loguniform", "min": 1e-4, "max": 1e-2},
        "beta": [0.1, 0.3]}
    cfg = SweepConfig(name="recorded", base={"dataset": "toy", "model": "builtin:tiny"},
                             parameters=params, budget=5, metric="gain")
    sweep_id = create_sweep(store, cfg)
    with store.write() as conn:
        conn.execute("UPDATE sweeps SET status='completed', baseline_json=? WHERE id=?",
                     (dumps({"builtin:tiny|toy": {"accuracy": 0.5, "n": 4}}), sweep_id))
        for n in range(5):
            p = {"dataset": ["noise-0", "noise-50"][n % 2]} if dataset_sweep else \
                {"learning_rate": 1e-4 * (n + 1), "beta": [0.1, 0.3][n % 2]}
            ok = n < 4
            result = {"metrics": {"eval_loss": 0.7 - 0.01 * n, "eval_rewards/accuracies": 0.5},
                      "runtime": 10.0 + n}
            if ok:
                result |= {"pair_accuracy": 0.5 + 0.05 * n, "baseline_accuracy": 0.5,
                           "gain": 0.05 * n}
            else:
                result["error"] = "SimulatedOOM: CUDA out of memory (simulated at step 1)."
            conn.execute("INSERT INTO runs(id, name, kind, status, config_json, created) "
                         "VALUES(?,?,?,?,?,?)", (f"run-{n}", f"recorded-{n}", "train",
                                                 "completed" if ok else "failed", "{}", now()))
            conn.execute("INSERT INTO sweep_trials(sweep_id, run_id, number, params_json, value,"
                         " status, gain_json) VALUES(?,?,?,?,?,?,?)",
                         (sweep_id, f"run-{n}", n, dumps(p), 0.05 * n if ok else None,
                          "completed" if ok else "failed", dumps(result)))
    return sweep_id


def open_page(page: str, timeout: int = 120, **session):
    """A page through app.py in Streamlit's AppTest, with `session` state set before the first
    run; it must render without an exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=timeout)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    if page != "pages/home.py":
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# ---------------------------------------------------------------------------------------------
# Browser tests: a real `streamlit run app.py` on a free loopback port, driven in headless
# Chromium through Playwright (the system browser: no browser download).
# ---------------------------------------------------------------------------------------------
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """`streamlit run app.py` in its own process group, stopped with everything it started."""

    def __init__(self, home: Path, env: dict | None = None):
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"streamlit-{self.port}.log"
        full_env = {**os.environ, "DPO_LAB_HOME": str(home), **(env or {})}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
                 "--server.port", str(self.port), "--server.address", "127.0.0.1",
                 "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self._wait_healthy()

    def _wait_healthy(self, attempts: int = 600) -> None:
        import time
        import urllib.request

        for _ in range(attempts):
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"streamlit did not come up: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        import os
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, Exception):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for_app(page, timeout_ms: int = 120_000) -> None:
    """Wait until the Streamlit script run has finished and nothing is pending."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']",
                           timeout=timeout_ms)


def assert_no_exception(page) -> None:
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()
