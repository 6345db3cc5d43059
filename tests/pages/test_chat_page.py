"""The Chat page through app.py (Streamlit AppTest) with a finished tiny LoRA run: both answers
appear, votes write the right pair (or none for a tie), the format note, anonymous mode."""

import json

import pytest
from streamlit.testing.v1 import AppTest

from dpo_core.publish.sample_run import RUN_ID, make_sample_run
from dpo_core.store import open_store
from tests.support import REPO, open_page

RUN_SPEC = f"run:{RUN_ID}"


@pytest.fixture
def lab_with_run(lab):
    """The shared lab with a finished tiny LoRA run in it."""
    make_sample_run(lab, open_store(lab.db_path))
    return lab


def chat_page():
    return open_page("pages/chat.py")


def send(at: AppTest, message: str, greedy: bool = False) -> AppTest:
    at.toggle(key="chat_greedy").set_value(greedy)
    at.number_input(key="chat_max_new").set_value(12)
    at.chat_input[0].set_value(message).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def answers(at: AppTest) -> list[str]:
    """The answers of every turn as generated (left, right, left, right, ...)."""
    chat = at.session_state["chat"] if "chat" in at.session_state else {"turns": []}
    return [t[side]["text"] for t in chat["turns"] for side in ("left", "right")]


def vote(at: AppTest, verdict: str, dataset: str = "chat-votes") -> AppTest:
    at.text_input(key="chat_new_dataset").set_value(dataset)
    at.radio(key="chat_vote_0").set_value(verdict).run()
    at.button(key="chat_save_0").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def pairs(ws, dataset: str) -> list[dict]:
    rows = open_store(ws.db_path).query(
        "SELECT p.prompt, p.chosen, p.rejected, p.source FROM pairs p "
        "JOIN datasets d ON d.id=p.dataset_id WHERE d.name=?", (dataset,))
    return [dict(r) for r in rows]


def test_message_gets_both_answers_with_timings(lab_with_run):
    at = send(chat_page(), "what is that ?")
    assert at.text_input(key="chat_base").value == "builtin:tiny"  # the run's base by default
    left, right = answers(at)
    assert left and right and left != right  # the adapter changes the answer
    shown = [m.markdown[0].value for m in at.chat_message if m.name == "assistant"]
    assert shown == [left, right]
    headings = " ".join(m.value for m in at.markdown)
    assert "Left · builtin:tiny" in headings and f"Right · {RUN_SPEC}" in headings
    assert sum("tokens/s" in c.value for c in at.caption) == 2


def test_a_batched_pair_shows_one_shared_first_token_time(lab_with_run):
    at = send(chat_page(), "what is that ?")
    assert at.session_state["chat"]["turns"][0]["batched"]  # a LoRA run and its base
    captions = [c.value for c in at.caption]
    sides = [c for c in captions if "tokens/s" in c]
    assert len(sides) == 2 and not any("first token" in c for c in sides)
    [shared] = [c for c in captions if "one batch" in c]
    assert "first tokens after" in shared


def test_sides_run_apart_each_show_first_token_time_from_the_send(lab_with_run, monkeypatch):
    from dpo_core.chat import side_by_side

    monkeypatch.setattr(side_by_side, "shares_weights", lambda left, right: False)
    at = send(chat_page(), "what is that ?")
    assert not at.session_state["chat"]["turns"][0]["batched"]
    sides = [c for c in at.caption if "tokens/s" in c.value]
    assert len(sides) == 2 and all(c.value.startswith("first token after ") for c in sides)
    assert all("same moment" in c.help for c in sides)
    assert not any("one batch" in c.value for c in at.caption)


def test_preference_vote_writes_the_pair(lab_with_run):
    at = send(chat_page(), "what is that ?")
    left, right = answers(at)
    vote(at, "right")
    assert pairs(lab_with_run, "chat-votes") == [{"prompt": "what is that ?", "chosen": right,
                                         "rejected": left, "source": "chat"}]
    assert any("Saved pair" in s.value for s in at.success)
    at.button(key="chat_see_0").click().run()
    assert at.session_state["dataset"] == "chat-votes"


def test_second_turn_pair_prompt_has_the_chosen_sides_history(lab_with_run):
    at = send(chat_page(), "what is that ?")
    first_left = answers(at)[0]
    at = send(at, "where is the ball ?")
    left, right = answers(at)[2:]
    at.text_input(key="chat_new_dataset").set_value("multi")
    at.radio(key="chat_vote_1").set_value("left").run()
    at.button(key="chat_save_1").click().run()
    (pair,) = pairs(lab_with_run, "multi")
    assert json.loads(pair["prompt"]) == [  # the chosen (left) side's own history
        {"role": "user", "content": "what is that ?"},
        {"role": "assistant", "content": first_left},
        {"role": "user", "content": "where is the ball ?"}]
    assert (pair["chosen"], pair["rejected"]) == (left, right)


def test_tie_is_a_vote_not_a_pair(lab_with_run):
    at = vote(send(chat_page(), "what is that ?"), "tie")
    db = open_store(lab_with_run.db_path)
    assert db.scalar("SELECT COUNT(*) FROM votes WHERE verdict='tie'") == 1
    assert db.scalar("SELECT COUNT(*) FROM datasets WHERE name='chat-votes'") == 0
    assert any("not a pair" in c.value for c in at.caption)


def test_format_warning_for_a_mismatched_format(lab_with_run):
    at = chat_page()
    assert not at.warning
    at.selectbox(key="chat_format").set_value("CHILDES (*MOT: / *CHI:)").run()
    assert any("trained with the chat template" in w.value for w in at.warning)


def test_anonymous_mode_hides_names_until_the_vote(lab_with_run):
    at = chat_page()
    at.toggle(key="chat_anonymous").set_value(True)
    at = send(at, "what is that ?")
    headings = [m.value for m in at.markdown]
    assert "**A**" in headings and "**B**" in headings
    assert not any(RUN_SPEC in h for h in headings)
    vote(at, "tie")
    headings = " ".join(m.value for m in at.markdown)
    assert RUN_SPEC in headings and "builtin:tiny" in headings


def test_regenerate_and_clear(lab_with_run):
    at = send(chat_page(), "what is that ?")
    first = answers(at)
    at.button[0].click().run()  # Regenerate: the next seed
    assert len(answers(at)) == 2 and answers(at) != first
    next(b for b in at.button if b.label == "Clear").click().run()
    assert answers(at) == []


def test_a_run_chosen_on_another_page_is_preselected(lab_with_run):
    make_sample_run(lab_with_run, open_store(lab_with_run.db_path), run_id="newer-run")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/chat.py").run()
    first = at.selectbox(key="chat_run").value
    wanted = RUN_ID if not first.startswith(RUN_ID) else "newer-run"
    at.session_state["run_id"] = wanted
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="chat_run").value.startswith(wanted)


def test_models_and_settings_survive_a_visit_to_another_page(lab_with_run):
    at = chat_page()
    at.number_input(key="chat_max_new").set_value(16)
    at.slider(key="chat_temp").set_value(0.3)
    at.text_input(key="chat_base").input("builtin:tiny ").run()
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/chat.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("Name both models" in i.value for i in at.info)
    assert at.text_input(key="chat_base").value == "builtin:tiny "
    assert at.number_input(key="chat_max_new").value == 16
    assert at.slider(key="chat_temp").value == 0.3
    assert at.selectbox(key="chat_run").value.startswith(RUN_ID)


def test_anonymous_vote_message_names_the_side_as_shown(lab_with_run):
    """Fails on the old page: it said "(right side chosen)", naming the hidden real side."""
    at = chat_page()
    at.toggle(key="chat_anonymous").set_value(True)
    at = vote(send(at, "what is that ?"), "left")  # the answer shown first: "A"
    [saved] = [s.value for s in at.success]
    assert "(A better)" in saved and "left" not in saved and "right" not in saved


def test_a_vote_on_identical_answers_writes_no_pair_and_says_why(lab_with_run):
    at = chat_page()
    at.radio(key="chat_mode").set_value("Any two models").run()
    at = send(at, "what is that ?", greedy=True)  # the same model twice, greedy: one answer
    left, right = answers(at)
    assert left == right
    vote(at, "left")
    assert pairs(lab_with_run, "chat-votes") == []
    assert any("teaches the model nothing" in i.value for i in at.info)
    db = open_store(lab_with_run.db_path)
    assert db.scalar("SELECT COUNT(*) FROM votes WHERE verdict='left' AND pair_id IS NULL") == 1
