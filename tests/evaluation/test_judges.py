"""The win-rate judges on tiny models: the reward-model judge follows its model's scores, the LLM
judge asks in both orders so swapping the replies flips its verdict, and both are deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_core.errors import ConfigError
from dpo_core.evaluation.judges import LLMJudge, RewardModelJudge, make_judge
from dpo_core.formats import plain_text
from tests.support import make_reward_model

PROMPT = "what is that ?"
KIND, FLAT = "it is a lovely ball !", "it is a ball ."
FLIP = {"a": "b", "b": "a", "tie": "tie"}


def reference_reward(folder: Path, prompt: str, reply: str) -> float:
    """The model's score of `prompt\\nreply` with plain transformers, independent of the judge."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        return float(model(**tok(f"{prompt}\n{reply}", return_tensors="pt")).logits[0, 0])


@pytest.fixture(scope="module")
def reward_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return make_reward_model(tmp_path_factory.mktemp("rm") / "kind-rm", tiny_model_dir, KIND)


@pytest.fixture(scope="module")
def llm_judge(tiny_model_dir) -> LLMJudge:
    return make_judge("llm", str(tiny_model_dir))


# ---------------------------------------------------------------------------------------------
# Reward-model judge
# ---------------------------------------------------------------------------------------------
def test_reward_judge_prefers_the_reply_its_model_scores_higher(reward_dir):
    judge = make_judge("reward-model", str(reward_dir))
    assert isinstance(judge, RewardModelJudge) and judge.name == "reward-model"
    verdict, detail = judge.judge(PROMPT, KIND, FLAT)
    assert verdict == "a" and detail["score_a"] > detail["score_b"]
    assert judge.judge(PROMPT, FLAT, KIND)[0] == "b"
    assert judge.judge(PROMPT, KIND, KIND)[0] == "tie"


def test_reward_judge_scores_equal_a_plain_transformers_forward(reward_dir):
    judge = RewardModelJudge(str(reward_dir))
    for reply in (KIND, FLAT, "no ."):
        assert judge.score(PROMPT, reply) == pytest.approx(
            reference_reward(reward_dir, PROMPT, reply), abs=1e-5)


def test_reward_judge_is_deterministic_across_loads(reward_dir, tiny_model_dir, tmp_path):
    first, second = RewardModelJudge(str(reward_dir)), RewardModelJudge(str(reward_dir))
    replies = [KIND, FLAT, "yes please , I love it .", "okay ."]
    assert [first.score(PROMPT, r) for r in replies] == [second.score(PROMPT, r) for r in replies]
    plain = make_reward_model(tmp_path / "rm", tiny_model_dir)  # untouched random weights
    judge = RewardModelJudge(str(plain))
    for a, b in [(KIND, FLAT), ("okay .", "no .")]:
        verdict, detail = judge.judge(PROMPT, a, b)
        expected = reference_reward(plain, PROMPT, a) - reference_reward(plain, PROMPT, b)
        assert verdict == ("a" if expected > 0 else "b" if expected < 0 else "tie")
        assert judge.judge(PROMPT, b, a)[0] == FLIP[verdict]


def test_reward_judge_margin_turns_close_calls_into_ties(reward_dir):
    judge = RewardModelJudge(str(reward_dir), margin=1e9)
    assert judge.judge(PROMPT, KIND, FLAT)[0] == "tie"


# ---------------------------------------------------------------------------------------------
# LLM judge
# ---------------------------------------------------------------------------------------------
REPLY_SETS = [(KIND, FLAT), ("yes please , I love it .", "it's awful ."), ("okay .", "no .")]


def test_llm_judge_verdicts_are_win_tie_or_loss_and_deterministic(llm_judge, tiny_model_dir):
    again = LLMJudge(str(tiny_model_dir))
    for a, b in REPLY_SETS:
        verdict, detail = llm_judge.judge(PROMPT, a, b)
        assert verdict in {"a", "b", "tie"}
        assert set(detail) == {"a_first", "b_first"}
        assert again.judge(PROMPT, a, b) == (verdict, detail)


def test_llm_judge_swapping_the_replies_flips_the_verdict(llm_judge):
    for a, b in REPLY_SETS:
        verdict, detail = llm_judge.judge(PROMPT, a, b)
        swapped, swapped_detail = llm_judge.judge(PROMPT, b, a)
        assert swapped == FLIP[verdict]
        assert swapped_detail == {"a_first": detail["b_first"], "b_first": detail["a_first"]}


def test_llm_judge_calls_identical_replies_a_tie(llm_judge):
    assert llm_judge.judge(PROMPT, KIND, KIND)[0] == "tie"


def test_llm_judge_cancels_a_position_bias(llm_judge, monkeypatch):
    """A judge that always leans to "A" wins only when it prefers the same reply in both orders."""
    def biased(prompt: str, a: str, b: str, bias: float = 1.0) -> float:
        content = {KIND: 0.5, FLAT: 0.0, "great !": 3.0}
        return bias + content[a] - content[b]

    monkeypatch.setattr(llm_judge, "preference", biased)
    assert llm_judge.judge(PROMPT, KIND, FLAT)[0] == "tie"  # 0.5 < bias: position decides
    assert llm_judge.judge(PROMPT, "great !", FLAT)[0] == "a"  # 3.0 > bias in both orders
    assert llm_judge.judge(PROMPT, FLAT, "great !")[0] == "b"


def test_llm_judge_prompt_needs_both_placeholders(tiny_model_dir):
    with pytest.raises(ConfigError, match="placeholders"):
        make_judge("llm", str(tiny_model_dir), "Which is better? {prompt}")
    custom = make_judge("llm", str(tiny_model_dir), "{prompt}\nA: {a}\nB: {b}\nBetter:")
    assert custom.judge(PROMPT, KIND, FLAT)[0] in {"a", "b", "tie"}


def test_make_judge_names_what_is_missing():
    with pytest.raises(ConfigError, match="needs a model spec"):
        make_judge("reward-model")
    with pytest.raises(ConfigError, match="Unknown judge"):
        make_judge("oracle", "x")


# ---------------------------------------------------------------------------------------------
# Conversational prompts
# ---------------------------------------------------------------------------------------------
CONVERSATION = [{"role": "user", "content": "what is that ?"},
                {"role": "assistant", "content": "a ball ."},
                {"role": "user", "content": "what colour is it ?"}]
AS_TEXT = "user: what is that ?\nassistant: a ball .\nuser: what colour is it ?"


def test_a_conversation_reaches_the_llm_judge_as_text_not_a_python_list(llm_judge):
    """Fails on the old code, which filled {prompt} with the list's repr."""
    assert plain_text(CONVERSATION) == AS_TEXT
    question = llm_judge.question(CONVERSATION, KIND, FLAT)
    assert f"Message: {AS_TEXT}\n" in question and "{'role'" not in question
    assert llm_judge.preference(CONVERSATION, KIND, FLAT) == pytest.approx(
        llm_judge.preference(AS_TEXT, KIND, FLAT), abs=1e-6)
    assert llm_judge.preference(CONVERSATION, KIND, FLAT) != pytest.approx(
        llm_judge.preference(str(CONVERSATION), KIND, FLAT), abs=1e-6)


@pytest.fixture(scope="module")
def whole_text_reward_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A reward model whose score depends on every token (not only the last one)."""
    return make_reward_model(tmp_path_factory.mktemp("rm") / "any-rm", tiny_model_dir)


def test_a_conversation_reaches_the_reward_judge_as_text(whole_text_reward_dir):
    """Fails on the old code, which scored `str(list)` + reply."""
    judge = RewardModelJudge(str(whole_text_reward_dir))
    assert not getattr(judge.tokenizer, "chat_template", None)  # the `prompt\nreply` layout
    assert judge.score(CONVERSATION, KIND) == pytest.approx(
        reference_reward(whole_text_reward_dir, AS_TEXT, KIND), abs=1e-5)
    assert judge.score(CONVERSATION, KIND) != pytest.approx(
        reference_reward(whole_text_reward_dir, str(CONVERSATION), KIND), abs=1e-5)


def test_a_conversation_keeps_its_turns_under_a_reward_models_chat_template(
        whole_text_reward_dir):
    import torch

    judge = RewardModelJudge(str(whole_text_reward_dir))
    judge.tokenizer.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
                                     "\n{% endfor %}")
    text = "<user>what is that ?\n<assistant>a ball .\n<user>what colour is it ?\n<assistant>" \
        + KIND + "\n"
    with torch.inference_mode():
        expected = float(judge.model(**judge.tokenizer(text, return_tensors="pt")).logits[0, 0])
    assert judge.score(CONVERSATION, KIND) == pytest.approx(expected, abs=1e-5)
    assert judge.score("what is that ?", KIND) != pytest.approx(expected, abs=1e-5)
