"""Chat generation: seeds, streaming, formats, votes -> pairs, shared base + LoRA under threads."""

from __future__ import annotations

import json
import threading

import pytest

from dpo_core.chat.cache import ModelCache
from dpo_core.chat.generate import generate, generate_batch, stream
from dpo_core.chat.sampling import SamplingSettings
from dpo_core.chat.side_by_side import PairStream, format_warning, render_chat, side_by_side
from dpo_core.chat.votes import record_vote
from dpo_core.data.datasets import get_dataset, iter_pairs
from dpo_core.errors import ConfigError
from dpo_core.formats import CHAT_FORMAT, CHILDES_FORMAT
from dpo_core.models import TINY_SPEC
from tests.support import make_full_run, make_lora_run

SETTINGS = SamplingSettings(seed=3, max_new_tokens=12, temperature=1.0)


@pytest.fixture
def cache(workspace_with_tiny):
    return ModelCache(workspace_with_tiny)


def test_same_seed_same_answer_and_seeds_differ(cache):
    side = cache.get(TINY_SPEC)
    prompt = render_chat(side, [], "what is that ?")
    first, again = generate(side, prompt, SETTINGS), generate(side, prompt, SETTINGS)
    assert first.text and first.text == again.text
    others = {generate(side, prompt, SamplingSettings(seed=s, max_new_tokens=12,
                                                      temperature=1.0)).text for s in (4, 5, 6)}
    assert len(others | {first.text}) > 1
    assert first.new_tokens > 0 and first.tokens_per_s > 0 and first.ttft_s is not None


def test_stream_yields_the_same_text_as_generate(cache):
    side = cache.get(TINY_SPEC)
    for fmt in (CHAT_FORMAT, CHILDES_FORMAT):
        prompt = render_chat(side, [], "what is that ?", fmt)
        s = stream(side, prompt, SETTINGS, fmt)
        chunks = list(s)
        assert "".join(chunks) == s.reply.text == generate(side, prompt, SETTINGS, fmt).text
        assert s.reply.ttft_s is not None


def test_batch_rows_match_single_answers(cache):
    side = cache.get(TINY_SPEC)
    prompts = [render_chat(side, [], "hi"), render_chat(side, [("a", "b")], "what is that ?")]
    batch = generate_batch(side, prompts, SETTINGS)
    assert [r.text for r in batch] == [generate(side, p, SETTINGS).text for p in prompts]


def test_plain_format_renders_speaker_tags_and_stops_at_the_next_tag(cache):
    side = cache.get(TINY_SPEC)
    text = render_chat(side, [("where is the dog ?", "there's a dog !")], "what is that ?",
                       CHILDES_FORMAT)
    assert text == "*MOT: where is the dog ? *CHI: there's a dog ! *MOT: what is that ? *CHI:"
    reply = generate(side, text, SamplingSettings(seed=1, max_new_tokens=40), CHILDES_FORMAT)
    assert "*MOT:" not in reply.text and "*CHI:" not in reply.text and "\n" not in reply.text


def test_format_warning_only_for_a_different_format():
    assert format_warning(CHILDES_FORMAT, CHILDES_FORMAT.to_dict()) is None
    note = format_warning(CHILDES_FORMAT, CHAT_FORMAT)
    assert note and "plain" in note and "chat template" in note


def test_settings_name_the_bad_field():
    with pytest.raises(ConfigError, match="temperature") as err:
        SamplingSettings(temperature=0)
    assert err.value.field == "sampling.temperature"
    with pytest.raises(ConfigError, match="top_p"):
        SamplingSettings(top_p=1.5)


def test_votes_become_pairs_and_ties_stay_votes(store):
    settings = SamplingSettings(seed=9)
    history = [("where is the dog ?", "there's a dog !")]
    vote = record_vote(store, TINY_SPEC, "run:x", "what is that ?", "a ball .", "no .", "left",
                       dataset="chat-votes", prompt_format=CHILDES_FORMAT, settings=settings,
                       history=history)
    edited = record_vote(store, TINY_SPEC, "run:x", "hi", "hello", "bye", "right",
                         dataset="chat-votes", prompt_format=CHILDES_FORMAT,
                         edited_better="hello mom .")
    tie = record_vote(store, TINY_SPEC, "run:x", "hi", "a", "b", "tie", dataset="chat-votes")
    assert tie.pair_id is None and vote.dataset == "chat-votes"
    pairs = list(iter_pairs(store, get_dataset(store, "chat-votes").id))
    assert [(p.prompt, p.chosen, p.rejected, p.source) for p in pairs] == [
        ("*MOT: where is the dog ? *CHI: there's a dog ! *MOT: what is that ?",
         "*CHI: a ball .", "*CHI: no .", "chat"),
        ("*MOT: hi", "*CHI: hello mom .", "*CHI: hello", "chat")]
    assert pairs[0].meta["left"] == TINY_SPEC and pairs[0].meta["settings"]["seed"] == 9
    assert [r["verdict"] for r in store.query("SELECT verdict FROM votes ORDER BY id")] == \
        ["left", "right", "tie"]
    assert edited.pair_id == pairs[1].id
    with pytest.raises(ConfigError, match="verdict"):
        record_vote(store, "a", "b", "p", "x", "y", "maybe")


def test_lora_and_base_share_one_copy_of_the_weights(cache, workspace_with_tiny):
    run = make_lora_run(workspace_with_tiny)
    base, tuned = cache.get(TINY_SPEC), cache.get(run)
    assert cache.weight_copies == 1 and base.base_spec is None and tuned.base_spec == TINY_SPEC
    prompt = render_chat(tuned, [], "what is that ?")
    assert generate(base, prompt, SETTINGS).text != generate(tuned, prompt, SETTINGS).text
    cache.keep_only([TINY_SPEC])
    assert cache.weight_copies == 1
    cache.keep_only(["some/other-model"])
    assert cache.weight_copies == 0


def test_concurrent_requests_never_mix_adapters(cache, workspace_with_tiny):
    run = make_lora_run(workspace_with_tiny)
    early_base = cache.get(TINY_SPEC)  # handed out before the adapter was attached
    sides = {"base": early_base, "tuned": cache.get(run), "base2": cache.get(TINY_SPEC)}
    prompts = [render_chat(sides["tuned"], [], m) for m in ("what is that ?", "hi")]
    expected = {(k, p): generate(s, p, SETTINGS).text for k, s in sides.items() for p in prompts}
    assert expected[("base", prompts[0])] == expected[("base2", prompts[0])]
    assert expected[("base", prompts[0])] != expected[("tuned", prompts[0])]
    got, errors = [], []

    def ask(key, prompt):
        try:
            got.append((key, prompt, generate(sides[key], prompt, SETTINGS).text))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    jobs = [(k, p) for _ in range(4) for k in sides for p in prompts]
    threads = [threading.Thread(target=ask, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == len(jobs)
    assert all(text == expected[(k, p)] for k, p, text in got)


def test_side_by_side_batches_base_and_adapter(cache, workspace_with_tiny):
    run = make_lora_run(workspace_with_tiny, fmt=CHILDES_FORMAT)
    both = side_by_side(cache, TINY_SPEC, run, [], [], "what is that ?", SETTINGS)
    one_by_one = side_by_side(cache, TINY_SPEC, run, [], [], "what is that ?", SETTINGS,
                              batch=False)
    assert both.batched and not one_by_one.batched
    assert both.prompt_format == CHILDES_FORMAT  # the run's format on both sides
    assert (both.left.text, both.right.text) == (one_by_one.left.text, one_by_one.right.text)
    assert both.left.text != both.right.text
    assert both.left.prompt_text.endswith("*MOT: what is that ? *CHI:")
    assert cache.weight_copies == 1


def test_a_run_with_its_own_tokenizer_answers_with_it_apart_from_the_base(
        cache, workspace_with_tiny):
    """An identical saved tokenizer is shared (so the pair batches); a changed one is kept."""
    from transformers import AutoTokenizer

    run = make_lora_run(workspace_with_tiny, fmt=CHILDES_FORMAT)
    final = workspace_with_tiny.runs / "lora1" / "final"
    tok = AutoTokenizer.from_pretrained(final)
    tok.add_tokens(["<extra_word>"])
    tok.save_pretrained(final)
    both = side_by_side(cache, TINY_SPEC, run, [], [], "what is that ?", SETTINGS)
    assert not both.batched and len(cache.get(run).tokenizer) == len(cache.get(TINY_SPEC)
                                                                     .tokenizer) + 1


def test_compare_cli_uses_the_runs_base_as_left(workspace_with_tiny, capsys):
    from dpo_core.cli.main import main

    run = make_lora_run(workspace_with_tiny)
    code = main(["compare", "--right", run, "--prompt", "what is that ?", "--seed", "2",
                 "--max-new-tokens", "8", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["left_spec"] == TINY_SPEC and out["right_spec"] == run
    assert out["left"]["text"] != out["right"]["text"] and out["batched"] is True
    assert main(["compare", "--right", TINY_SPEC, "--prompt", "hi"]) == 2
    assert "--left" in capsys.readouterr().err


def _poll(live: PairStream) -> list[tuple[str, str]]:
    seen = []
    while live.running:
        seen.append(live.visible())
    return seen


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_pair_stream_streams_both_sides_at_once_with_one_by_one_answers(
        cache, workspace_with_tiny, kind):
    """The chat page's stream: both answers grow together (one batch on shared weights, two
    threads on separate weights) and end equal to answering one side after the other."""
    run = (make_lora_run(workspace_with_tiny) if kind == "lora"
           else make_full_run(workspace_with_tiny))
    settings = SamplingSettings(seed=5, max_new_tokens=24, temperature=1.0)
    left, right = cache.get(TINY_SPEC), cache.get(run)
    texts = [render_chat(left, [], "what is that ?", CHAT_FORMAT),
             render_chat(right, [], "what is that ?", CHAT_FORMAT)]
    live = PairStream(left, right, texts, settings, CHAT_FORMAT)
    seen = _poll(live)
    got = live.wait()
    alone = [generate(left, texts[0], settings, CHAT_FORMAT),
             generate(right, texts[1], settings, CHAT_FORMAT)]
    assert [r.text for r in got] == [r.text for r in alone]
    assert got[0].text != got[1].text and got[1].spec == run and got[0].spec == TINY_SPEC
    assert live.batched is (kind == "lora")
    for shown in seen:  # what the page showed was always a start of the final answer
        assert got[0].text.startswith(shown[0]) and got[1].text.startswith(shown[1])
    assert live.visible() == (got[0].text, got[1].text)
    assert all(r.new_tokens > 0 and r.ttft_s is not None for r in got)
    assert cache.weight_copies == (1 if kind == "lora" else 2)


def test_side_by_side_of_separate_weights_answers_one_side_after_the_other(
        cache, workspace_with_tiny, monkeypatch):
    """`compare` on a full fine-tune: no one watches the stream, so the sides run one after the
    other, on the background path (not the caller's own thread, see chat/threads.py); the
    answers are those of each side alone."""
    from dpo_core.chat import side_by_side as module

    run = make_full_run(workspace_with_tiny)
    real, seen = module.generate_tokens, []

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "generate_tokens", spy)
    both = side_by_side(cache, TINY_SPEC, run, [], [], "what is that ?", SETTINGS)
    assert not both.batched and seen == ["dpo-generate", "dpo-generate"]
    left, right = cache.get(TINY_SPEC), cache.get(run)
    assert both.left.text == generate(left, both.left.prompt_text, SETTINGS).text
    assert both.right.text == generate(right, both.right.prompt_text, SETTINGS).text
    assert both.left.text != both.right.text and both.right.ttft_s < both.seconds


def test_a_preference_between_identical_answers_is_a_vote_not_a_pair(store):
    from dpo_core.chat.votes import IDENTICAL_ANSWERS

    result = record_vote(store, "a", "b", "what is that ?", "a ball .", " a ball . ", "left",
                         dataset="votes")
    assert (result.pair_id, result.dataset, result.note) == (None, None, IDENTICAL_ANSWERS)
    assert store.scalar("SELECT COUNT(*) FROM votes") == 1
    assert store.scalar("SELECT COUNT(*) FROM datasets WHERE name='votes'") == 0
    edited = record_vote(store, "a", "b", "what is that ?", "a ball .", "a ball .", "right",
                         dataset="votes", edited_better="it is a red ball !")
    assert edited.pair_id is not None and edited.note is None  # the edit made them differ
