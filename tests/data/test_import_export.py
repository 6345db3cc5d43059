"""Import of every supported shape, the real data sets, and export round trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpo_core.data.datasets import count_pairs, get_dataset, iter_pairs
from dpo_core.data.exporter import export_pairs, guard_cell
from dpo_core.data.importer import import_pairs
from dpo_core.store import Store
from tests.support import shared_data


def pairs_of(store, name):
    return [p.as_record() for p in iter_pairs(store, get_dataset(store, name).id)]


def test_childes_csv_takes_the_shared_mot_turn_as_prompt(memory_store, tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(",pospair,negpair\n0,*MOT: what is that ?\t*CHI: a gun .,"
                    "*MOT: what is that ?\t*CHI: you do it . \n", encoding="utf-8")
    result = import_pairs(memory_store, path, dataset="c")
    assert result.shape == "childes"
    assert pairs_of(memory_store, "c") == [
        {"prompt": "*MOT: what is that ?", "chosen": "*CHI: a gun .",
         "rejected": "*CHI: you do it ."}]


@pytest.mark.parametrize("suffix", ["json", "jsonl", "parquet"])
def test_trl_records_in_each_file_format(memory_store, tmp_path, suffix):
    records = [{"prompt": "p1", "chosen": "good", "rejected": "bad"},
               {"prompt": " p2\n", "chosen": "ok ", "rejected": "no"}]
    path = tmp_path / f"in.{suffix}"
    if suffix == "json":
        path.write_text(json.dumps(records))
    elif suffix == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    else:
        import pandas as pd

        pd.DataFrame(records).to_parquet(path)
    import_pairs(memory_store, path, dataset="d")
    assert pairs_of(memory_store, "d") == records


def test_csv_with_a_column_mapping(memory_store, tmp_path):
    path = tmp_path / "any.csv"
    path.write_text("q,good,bad\nhello,hi,go away\n")
    import_pairs(memory_store, path, dataset="m",
                 mapping={"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert pairs_of(memory_store, "m") == [{"prompt": "hello", "chosen": "hi",
                                            "rejected": "go away"}]


def test_conversational_rows_read_back_as_message_lists(memory_store):
    user = [{"role": "user", "content": "hi"}]
    rows = [{"prompt": user, "chosen": [{"role": "assistant", "content": "hello"}],
             "rejected": [{"role": "assistant", "content": "go"}]}]
    result = import_pairs(memory_store, rows, dataset="conv")
    assert result.shape == "conversational"
    assert pairs_of(memory_store, "conv") == rows  # lists, not their JSON text


def test_implicit_prompt_is_the_shared_dialogue_start(memory_store):
    rows = [{"chosen": "\n\nHuman: hi there\n\nAssistant: hello friend",
             "rejected": "\n\nHuman: hi there\n\nAssistant: go away"}]
    import_pairs(memory_store, rows, dataset="hh")
    assert pairs_of(memory_store, "hh") == [{"prompt": "\n\nHuman: hi there\n\nAssistant:",
                                             "chosen": " hello friend", "rejected": " go away"}]


def test_implicit_prompt_with_messages_cuts_at_a_message(memory_store):
    q = {"role": "user", "content": "hi"}
    rows = [{"chosen": [q, {"role": "assistant", "content": "hello"}],
             "rejected": [q, {"role": "assistant", "content": "hell"}]}]
    import_pairs(memory_store, rows, dataset="hhm")
    assert pairs_of(memory_store, "hhm")[0] == {
        "prompt": [q], "chosen": [{"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "assistant", "content": "hell"}]}


def test_system_column_becomes_each_rows_system_turn(memory_store):
    rows = [{"system": "Be brief.", "input": "2+2?", "chosen": "4", "rejected": "5"},
            {"system": "", "input": "3+3?", "chosen": "6", "rejected": "7"}]
    result = import_pairs(memory_store, rows, dataset="orca")
    assert result.shape == "system" and result.dataset.prompt_format == {}
    first, second = iter_pairs(memory_store, result.dataset.id)
    assert first.prompt == [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "2+2?"}]
    assert first.chosen == [{"role": "assistant", "content": "4"}] and first.meta == {}
    assert second.prompt == [{"role": "user", "content": "3+3?"}]  # no empty system turn


def test_multiple_choice_each_wrong_or_one_sampled(memory_store):
    rows = [{"context": "The cat", "choices": ["sat.", "flew.", "sang."], "answer": 0}]
    each = import_pairs(memory_store, rows, dataset="mc", template="Context: {context}")
    assert each.count == 2
    assert pairs_of(memory_store, "mc")[1] == {"prompt": "Context: The cat", "chosen": "sat.",
                                               "rejected": "sang."}
    one = import_pairs(memory_store, rows, dataset="mc1", choices="sample", seed=3)
    again = import_pairs(memory_store, rows, dataset="mc2", choices="sample", seed=3)
    assert one.count == 1 and pairs_of(memory_store, "mc1") == pairs_of(memory_store, "mc2")
    assert again.count == 1


def test_hub_id_offline_is_a_clear_error(memory_store, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from dpo_core.errors import DataError

    with pytest.raises(DataError, match="hub"):
        import_pairs(memory_store, "no-such-owner/no-such-set", dataset="h")
    assert memory_store.scalar("SELECT COUNT(*) FROM datasets") == 0


@pytest.mark.parametrize("name,count", [
    # The README counts 25,547 / 25,519 (the last index); the files hold one more row each,
    # and 18,000 + 7,548 = 25,548 confirms it.
    ("len_pairs_no_overlap_1.csv", 25_548), ("tok_pairs_no_overlap_1.csv", 25_520),
    ("huggingface_dpo_format.json", 18_000), ("huggingface_dpo_format_eval.json", 7_548),
    ("synthetic_dpo_format.json", 18_000)])
def test_real_childes_files_import_with_their_counts(memory_store, name, count):
    result = import_pairs(memory_store, shared_data("childes-dpo", name), dataset=name)
    assert result.count == count == count_pairs(memory_store, result.dataset.id)


@pytest.mark.parametrize("name", ["dpo_000-1.json", "dpo_050-1.json", "val-1.json"])
def test_real_hellaswag_files_import(memory_store, name):
    assert import_pairs(memory_store, shared_data("hellaswag-noise", name),
                        dataset=name).count == 1000


def test_real_json_export_is_byte_identical(memory_store, tmp_path):
    src = shared_data("childes-dpo", "huggingface_dpo_format_eval.json")
    import_pairs(memory_store, src, dataset="e")
    export_pairs(memory_store, "e", tmp_path / "out.json")
    assert (tmp_path / "out.json").read_bytes() == src.read_bytes()


def test_csv_export_guards_formulas_only_there(memory_store, tmp_path):
    rows = [{"prompt": "=1+1", "chosen": "@SUM(A1)", "rejected": "-2"}]
    import_pairs(memory_store, rows, dataset="f")
    export_pairs(memory_store, "f", tmp_path / "o.csv")
    export_pairs(memory_store, "f", tmp_path / "o.jsonl")
    assert (tmp_path / "o.csv").read_text().splitlines()[1] == "'=1+1,'@SUM(A1),'-2"
    assert json.loads((tmp_path / "o.jsonl").read_text()) == rows[0]
    assert guard_cell("\tx") == "'\tx" and guard_cell("plain") == "plain"
    assert guard_cell("'quoted") == "''quoted"  # so the import can take every guard off
    import_pairs(memory_store, tmp_path / "o.csv", dataset="f-again")
    assert pairs_of(memory_store, "f-again") == rows  # the guard does not stick to the text


text = st.text(min_size=1).filter(lambda s: s.strip())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(text, text, text).filter(lambda t: t[1] != t[2]),
                     min_size=1, max_size=6),
       fmt=st.sampled_from(["json", "jsonl", "parquet", "csv"]))
def test_export_import_round_trip_is_exact(tmp_path, rows, fmt):
    store = Store(":memory:")
    records = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in rows]
    import_pairs(store, records, dataset="a")
    path = tmp_path / f"rt.{fmt}"
    export_pairs(store, "a", path)
    import_pairs(store, path, dataset="b")
    assert pairs_of(store, "b") == records
    store.close()
