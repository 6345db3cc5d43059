"""Data checks find the pairs users need to fix."""

from __future__ import annotations

from dpo_core.data.browse import page
from dpo_core.data.checks import run_checks
from dpo_core.data.edits import update_pair
from dpo_core.data.importer import import_pairs
from tests.support import shared_data


def _rows():
    return [
        {"prompt": "*MOT: a", "chosen": "*CHI: yes", "rejected": "*CHI: no"},
        {"prompt": "*MOT: a", "chosen": "*CHI: yes", "rejected": "*CHI: no"},  # duplicate
        {"prompt": "*MOT: a", "chosen": "*CHI: no", "rejected": "*CHI: yes"},  # swapped twin
        {"prompt": "*MOT: b", "chosen": "untagged", "rejected": "*CHI: x"},  # lost tag
        {"prompt": "*MOT: c", "chosen": "*CHI: " + "word " * 30, "rejected": "*CHI: hm"},
    ]


def test_each_check_names_the_failing_pairs(memory_store):
    import_pairs(memory_store, _rows(), dataset="d")
    ids = [p.id for p in page(memory_store, "d").pairs]
    p = page(memory_store, "d").pairs[4]
    update_pair(memory_store, p.id, {"rejected": p.chosen}, p.version)  # made identical
    results = run_checks(memory_store, "d")
    assert results["duplicate"]["ids"] == [ids[1]]
    assert results["swapped"]["ids"] == ids[:3]
    assert results["speaker_tag"]["ids"] == [ids[3]]
    assert results["identical"]["ids"] == [ids[4]]
    assert results["empty"]["count"] == 0


def test_length_imbalance_and_too_long(memory_store):
    import_pairs(memory_store, _rows(), dataset="d")
    results = run_checks(memory_store, "d", max_tokens=10, tokenizer=lambda s: {
        "input_ids": s.split()})
    last = page(memory_store, "d").pairs[-1].id
    assert results["length_imbalance"]["ids"] == [last]
    assert results["too_long"]["ids"] == [last]


def test_synthetic_childes_set_is_flagged_for_missing_speaker_tags(memory_store):
    import_pairs(memory_store, shared_data("childes-dpo", "huggingface_dpo_format_eval.json"),
                 dataset="real")
    import_pairs(memory_store, shared_data("childes-dpo", "synthetic_dpo_format.json"),
                 dataset="synthetic")
    assert run_checks(memory_store, "synthetic")["speaker_tag"]["count"] == 18_000
    assert run_checks(memory_store, "real")["speaker_tag"]["count"] == 0
