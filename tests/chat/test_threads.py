"""Generation asked for in the caller's thread is as fast as in a background thread: libgomp's
wait policy is set before torch loads it, and the caller's paths generate on the background path.
(The timing itself is bench/bench_threads.py's job: no wall clock in unit tests.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from dpo_core.chat import threads
from dpo_core.chat.cache import ModelCache
from dpo_core.chat.generate import generate_batch, generate_tokens
from dpo_core.chat.sampling import SamplingSettings
from dpo_core.chat.side_by_side import render_chat, side_by_side
from dpo_core.models import TINY_SPEC
from tests.support import REPO, make_lora_run

SETTINGS = SamplingSettings(seed=3, max_new_tokens=4)


def _python(code: str, **env) -> str:
    full = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"} | env
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_generation_sets_libgomp_spin_before_torch_loads():
    """Fails on the old code: the caller's thread kept libgomp's 300,000-spin default."""
    code = ("import os, sys; import dpo_core.cli.main; import dpo_core.chat.generate; "
            "import torch; from dpo_core.chat import threads; "
            "print(os.environ.get('GOMP_SPINCOUNT'), threads.WAIT_POLICY_SET)")
    assert _python(code) == "100 True"
    assert _python(code, GOMP_SPINCOUNT="5000") == "5000 True"  # the user's choice stays


def test_after_torch_the_policy_is_not_pretended():
    code = ("import os, torch; from dpo_core.chat import threads; "
            "print(os.environ.get('GOMP_SPINCOUNT'), threads.WAIT_POLICY_SET)")
    assert _python(code) == "None False"


def test_off_caller_runs_the_work_in_a_fresh_thread_and_reraises():
    assert threads.off_caller(lambda: threading.current_thread().name) == "dpo-generate"
    assert threads.off_caller(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        threads.off_caller(lambda: 1 / 0)


def test_caller_paths_generate_on_the_background_path(workspace_with_tiny, monkeypatch):
    """generate_batch (win rate, pair builders) and compare's PairStream never generate in the
    caller's thread (fails on the old code, where both did)."""
    seen: list[str] = []

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return generate_tokens(*args, **kwargs)

    monkeypatch.setattr("dpo_core.chat.generate.generate_tokens", spy)
    monkeypatch.setattr("dpo_core.chat.side_by_side.generate_tokens", spy)
    cache = ModelCache(workspace_with_tiny)
    side = cache.get(TINY_SPEC)
    generate_batch(side, [render_chat(side, [], "what is that ?")], SETTINGS)
    run = make_lora_run(workspace_with_tiny)
    result = side_by_side(cache, TINY_SPEC, run, [], [], "what is that ?", SETTINGS)
    assert result.batched and seen == ["dpo-generate", "dpo-generate"]
