"""Both answers of the Space stream together, as on the lab's Chat page: a LoRA run and its base
answer as one mixed-adapter batch, so neither side waits for the other to finish."""

from __future__ import annotations

import torch

from dpo_core.demo import app as demo_app
from dpo_core.demo.engine import Settings

SETTINGS = Settings(temperature=0.7, top_p=0.95, top_k=50, max_new_tokens=10)


def grew_together(updates: list[dict[str, str]]) -> bool:
    """Some update shows both answers begun and neither finished (one after the other never
    does: the second begins only once the first is final)."""
    final = updates[-1]
    return any(all(u[side] and u[side] != final[side] for side in ("left", "right"))
               for u in updates)


def test_both_answers_grow_together(engine):
    torch.manual_seed(0)
    meter: dict = {}
    updates = list(engine.stream_pair({"left": [], "right": []}, "what is that ?", SETTINGS,
                                      meter))
    assert grew_together(updates), updates
    assert set(meter["new_tokens"]) == {"left", "right"}
    assert all(1 <= n <= SETTINGS.max_new_tokens for n in meter["new_tokens"].values())
    assert updates[-1]["left"] != updates[-1]["right"]  # the adapter answers differently


def test_the_page_shows_both_answers_growing(engine, monkeypatch):
    """Fails on the old demo: the left answer was finished before the right one began."""
    torch.manual_seed(1)
    monkeypatch.setattr(demo_app, "STREAM_INTERVAL_S", 0.0)  # every update reaches the page
    views = list(demo_app.respond(engine, "what is that ?", 0.7, 0.95, 50, 10, None))
    updates = [{"left": left[-1]["content"]["text"], "right": right[-1]["content"]["text"]}
               for left, right, _, _ in views]
    assert grew_together(updates), updates
    details = views[-1][2]
    assert details["status"] == "done" and set(details["new_tokens"]) == {"left", "right"}
    assert details["prompt_tokens"]["left"]["control_tokens"] >= 1  # the template's own


def test_one_side_still_streams_alone(engine):
    meter: dict = {}
    answers = list(engine.stream(True, [], "what is that ?", SETTINGS, meter))
    assert answers and 1 <= meter["new_tokens"] <= SETTINGS.max_new_tokens
