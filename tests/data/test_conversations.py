"""Conversational pairs stay conversations: stored and read back as message lists, rendered
through the model's chat template (system and every turn kept) wherever a pair becomes model
text, edited and undone as lists, exported back byte for byte; and older stores upgrade."""

from __future__ import annotations

import json
import sqlite3

import pytest

from dpo_core.data import edits, transforms
from dpo_core.data.datasets import count_pairs, get_dataset, iter_pairs
from dpo_core.data.exporter import export_pairs
from dpo_core.data.importer import import_pairs
from dpo_core.errors import DataError
from dpo_core.formats import CHAT_FORMAT, CHILDES_FORMAT, PromptFormat, leading_tag, strip_tag
from dpo_core.store import Store
from tests.data.conftest import SYSTEM, hub_rows

JSON_MARKS = ('"role"', '"content"', "[{", "}]")


def _pairs(store, name):
    return list(iter_pairs(store, get_dataset(store, name).id))


def test_conversations_read_back_as_lists_from_every_reader(memory_store, hub_file):
    import_pairs(memory_store, hub_file, dataset="hub")
    pair = _pairs(memory_store, "hub")[0]
    assert isinstance(pair.prompt, list) and isinstance(pair.chosen, list)
    assert pair.as_record() == hub_rows()[0]
    assert edits.get_pair(memory_store, pair.id).prompt == hub_rows()[0]["prompt"]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet", "csv"])
def test_export_writes_the_lists_back(memory_store, hub_file, tmp_path, fmt):
    import_pairs(memory_store, hub_file, dataset="hub")
    out = tmp_path / f"out.{fmt}"
    export_pairs(memory_store, "hub", out)
    if fmt == "json":  # byte for byte: the same lists, in the same layout
        assert out.read_bytes() == hub_file.read_bytes()
    import_pairs(memory_store, out, dataset="again")
    assert [p.as_record() for p in _pairs(memory_store, "again")] == hub_rows()


def test_a_user_turn_repeated_in_the_replies_becomes_the_prompt(memory_store):
    """UltraFeedback-binarized: prompt text, chosen/rejected = [user turn, assistant turn]."""
    ask = {"role": "user", "content": "Name a colour."}
    rows = [{"prompt": "Name a colour.", "chosen": [ask, {"role": "assistant", "content": "Red."}],
             "rejected": [ask, {"role": "assistant", "content": "Seven."}], "score_chosen": 8.0}]
    import_pairs(memory_store, rows, dataset="uf")
    pair = _pairs(memory_store, "uf")[0]
    assert pair.prompt == [ask]
    assert pair.chosen == [{"role": "assistant", "content": "Red."}]
    assert pair.rejected == [{"role": "assistant", "content": "Seven."}]
    assert pair.meta == {"columns": {"score_chosen": 8.0}}


def test_shared_turns_that_are_not_the_prompt_are_refused(memory_store):
    lead = {"role": "user", "content": "Something else entirely."}
    rows = [{"prompt": "Name a colour.",
             "chosen": [lead, {"role": "assistant", "content": "Red."}],
             "rejected": [lead, {"role": "assistant", "content": "Seven."}]}]
    with pytest.raises(DataError, match="row 1, column chosen: chosen and rejected both start"):
        import_pairs(memory_store, rows, dataset="bad")
    assert memory_store.scalar("SELECT COUNT(*) FROM datasets") == 0


def test_rendered_pairs_are_chat_template_text_with_every_turn(memory_store, hub_file,
                                                              tiny_tokenizer):
    from dpo_core.data.rendering import render_pair

    import_pairs(memory_store, hub_file, dataset="hub")
    pair = _pairs(memory_store, "hub")[0]
    out = render_pair(pair, CHAT_FORMAT, tiny_tokenizer, max_length=512)
    assert out.prompt == (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
                          "<|im_start|>user\nWhat colour is ball 0?<|im_end|>\n"
                          "<|im_start|>assistant\nWhich ball do you mean?<|im_end|>\n"
                          "<|im_start|>user\nThe one under chair 0.<|im_end|>\n"
                          "<|im_start|>assistant\n")
    assert out.chosen == "Ball 0 is red.<|im_end|>"
    assert out.rejected == "I do not know, go away.<|im_end|>"
    for text in (out.prompt, out.chosen, out.rejected):
        assert not any(mark in text for mark in JSON_MARKS)


def test_a_plain_format_writes_turns_with_its_tags():
    prompt = [{"role": "system", "content": "Talk like a child."},
              {"role": "user", "content": "what is that ?"},
              {"role": "assistant", "content": "a ball ."},
              {"role": "user", "content": "and that ?"}]
    reply = [{"role": "assistant", "content": "a dog ."}]
    assert CHILDES_FORMAT.render_prompt(prompt) == \
        "Talk like a child.\n*MOT: what is that ? *CHI: a ball . *MOT: and that ?"
    assert CHILDES_FORMAT.render_reply(reply) == " *CHI: a dog ."
    assert PromptFormat().render_reply(reply) == " a dog ."


def test_a_reply_of_several_messages_continues_the_template(tiny_tokenizer):
    reply = [{"role": "assistant", "content": "Red."}, {"role": "user", "content": "Sure?"},
             {"role": "assistant", "content": "Yes."}]
    assert CHAT_FORMAT.render_reply(reply, tiny_tokenizer) == (
        "Red.<|im_end|>\n<|im_start|>user\nSure?<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>")


def test_the_system_column_reaches_training_and_scoring(memory_store, tiny_tokenizer):
    """orca's per-row system was kept in meta and dropped: now every rendering applies it."""
    from dpo_core.evaluation.scoring import encode_pairs

    rows = [{"system": "You are a pirate.", "question": "Hello?", "chosen": "Arr!", "rejected": "Hi."},
            {"system": "You are a judge.", "question": "Hello?", "chosen": "Order!",
             "rejected": "Hi."}]
    import_pairs(memory_store, rows, dataset="orca")
    pirate, judge = _pairs(memory_store, "orca")
    fmt = CHAT_FORMAT
    assert "You are a pirate." in fmt.render_prompt(pirate.prompt, tiny_tokenizer)
    assert "You are a judge." in fmt.render_prompt(judge.prompt, tiny_tokenizer)
    ids, _ = encode_pairs(tiny_tokenizer, fmt, [pirate])[0]  # what evaluation scores
    assert "You are a pirate." in tiny_tokenizer.decode(list(ids))


def test_frozen_run_pairs_are_chat_template_text(store, workspace_with_tiny, hub_file):
    from dpo_core.models import load_tokenizer, resolve_path
    from dpo_core.training.config import RunConfig
    from dpo_core.training.freeze import prompt_format_for, render_pairs

    ds = import_pairs(store, hub_file, dataset="hub").dataset
    cfg = RunConfig(model="builtin:tiny", dataset="hub", max_length=256, max_prompt_length=128)
    path = resolve_path("builtin:tiny")
    tok = load_tokenizer(path)
    fmt = prompt_format_for(cfg, ds.prompt_format, path, tok)
    rows = render_pairs(store, ds.id, "train", 0, fmt, tok, cfg)
    assert len(rows) == 12
    for row in rows:
        for key in ("prompt", "chosen", "rejected"):
            assert not any(mark in row[key] for mark in JSON_MARKS), row[key]
    assert rows[0]["prompt"].startswith(f"<|im_start|>system\n{SYSTEM}")
    assert rows[0]["chosen"] == "Ball 0 is red.<|im_end|>"


def test_swap_edit_and_undo_keep_conversations(memory_store, hub_file):
    import_pairs(memory_store, hub_file, dataset="hub")
    pair = _pairs(memory_store, "hub")[0]
    swapped = edits.swap_pair(memory_store, pair.id, pair.version)
    assert (swapped.chosen, swapped.rejected) == (pair.rejected, pair.chosen)
    new_prompt = [*pair.prompt[:-1], {"role": "user", "content": "The blue one."}]
    edited = edits.update_pair(memory_store, pair.id, {"prompt": new_prompt}, swapped.version)
    assert edited.prompt == new_prompt
    edits.undo(memory_store, dataset="hub")
    edits.undo(memory_store, dataset="hub")
    back = edits.get_pair(memory_store, pair.id)
    assert (back.prompt, back.chosen, back.rejected) == (pair.prompt, pair.chosen, pair.rejected)
    text = edits.update_pair(memory_store, pair.id, {"chosen": "plain now"}, back.version)
    assert text.chosen == "plain now" and isinstance(text.rejected, list)


def test_flipped_and_derived_conversations_stay_lists(memory_store, hub_file):
    import_pairs(memory_store, hub_file, dataset="hub")
    noisy = transforms.add_label_noise(memory_store, "hub", 1.0, into="noisy")
    flipped = _pairs(memory_store, noisy.name)[0]
    assert flipped.chosen == hub_rows()[0]["rejected"] and isinstance(flipped.prompt, list)


def test_tags_and_chat_seeds_take_conversations():
    messages = [{"role": "user", "content": "*MOT: hi"}]
    assert leading_tag(messages) is None and strip_tag(messages) is messages
    assert CHILDES_FORMAT.render_prompt(strip_tag("*MOT: hi")) == "hi"


def test_label_noise_flips_only_the_train_split_by_default(memory_store):
    rows = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(30)]
    import_pairs(memory_store, rows, dataset="d")
    split = transforms.split_dataset(memory_store, "d", 10, first=True, into="s")
    noisy = transforms.add_label_noise(memory_store, "s", 0.5, seed=1, into="n")
    evals = list(iter_pairs(memory_store, noisy.id, "eval"))
    assert all(p.chosen.startswith("good") for p in evals)  # held-out pairs stay clean
    assert noisy.recipe["splits"] == "train" and noisy.recipe["flipped"] == 10
    assert noisy.recipe["of"] == count_pairs(memory_store, split.id, "train") == 20
    everywhere = transforms.add_label_noise(memory_store, "s", 1.0, into="all", splits="all")
    assert all(p.chosen.startswith("bad") for p in iter_pairs(memory_store, everywhere.id))


def test_eval_size_of_one_point_oh_or_two_and_a_half_is_refused(memory_store):
    rows = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(10)]
    import_pairs(memory_store, rows, dataset="d")
    for size in (1.0, 2.5, "1.0", "2.5"):
        with pytest.raises(DataError, match="ambiguous"):
            transforms.split_dataset(memory_store, "d", size, into="x")
    assert count_pairs(memory_store, transforms.split_dataset(
        memory_store, "d", "2", into="two").id, "eval") == 2
    assert memory_store.scalar("SELECT COUNT(*) FROM datasets") == 2


def _old_store(path) -> None:
    """A store as migration 6 left it, written with the SQL older code ran."""
    old = Store(path, migrate_to=6)
    old.close()
    conn = sqlite3.connect(path)
    rows = hub_rows()[:2]
    conn.execute("INSERT INTO datasets(id, name, created, recipe_json, prompt_format) VALUES "
                 "(1, 'conv', 0, '{}', '{\"kind\":\"chat\"}'), (2, 'orca', 0, "
                 "'{\"import\":{\"shape\":\"system\"}}', '{\"kind\":\"plain\"}')")
    for r in rows:
        conn.execute("INSERT INTO pairs(dataset_id, prompt, chosen, rejected, created, updated) "
                     "VALUES(1,?,?,?,0,0)", tuple(json.dumps(r[k], ensure_ascii=False,
                                                           separators=(",", ":"))
                                                for k in ("prompt", "chosen", "rejected")))
    conn.execute("INSERT INTO pairs(dataset_id, prompt, chosen, rejected, meta_json, created, "
                 "updated) VALUES(2, '2+2?', '4', '5', '{\"system\":\"Be brief.\"}', 0, 0), "
                 "(2, '3+3?', '6', '7', '{}', 0, 0), (1, 'text [ot json', 'a', 'b', '{}', 0, 0)")
    conn.commit()
    conn.close()


def test_an_older_store_upgrades_its_conversations_and_system_rows(workspace):
    _old_store(workspace.db_path)
    store = Store(workspace.db_path)
    conv = _pairs(store, "conv")
    assert [p.as_record() for p in conv[:2]] == hub_rows()[:2]
    assert conv[2].prompt == "text [ot json"  # text stays text
    orca = _pairs(store, "orca")
    assert orca[0].prompt == [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "2+2?"}]
    assert orca[0].chosen == [{"role": "assistant", "content": "4"}] and orca[0].meta == {}
    assert orca[1].prompt == [{"role": "user", "content": "3+3?"}]
    assert store.scalar("SELECT COUNT(*) FROM pairs") == 5
    assert store.query("SELECT rowid FROM pairs_fts WHERE pairs_fts MATCH 'brief'")
    store.close()
