"""Derived datasets remember their parent and recipe."""

from __future__ import annotations

from dpo_core.data import transforms
from dpo_core.data.datasets import count_pairs, iter_pairs
from dpo_core.data.importer import import_pairs


def _dataset(store, n=100):
    rows = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(n)]
    rows.append(dict(rows[0]))
    return import_pairs(store, rows, dataset="d").dataset


def test_first_n_split_and_random_split(memory_store):
    parent = _dataset(memory_store)
    first = transforms.split_dataset(memory_store, "d", 21, first=True, into="f")
    evals = [p.prompt for p in iter_pairs(memory_store, first.id, "eval")]
    assert evals[0] == "p80" and len(evals) == 21
    assert first.parent_id == parent.id and first.recipe["op"] == "split"
    a = transforms.split_dataset(memory_store, "d", 0.2, seed=1, into="a")
    b = transforms.split_dataset(memory_store, "d", 0.2, seed=1, into="b")
    assert count_pairs(memory_store, a.id, "eval") == 20
    assert [p.prompt for p in iter_pairs(memory_store, a.id, "eval")] == [
        p.prompt for p in iter_pairs(memory_store, b.id, "eval")]


def test_label_noise_flips_the_fraction_with_a_seed(memory_store):
    _dataset(memory_store)
    noisy = transforms.add_label_noise(memory_store, "d", 0.5, seed=2, into="n")
    flipped = [p for p in iter_pairs(memory_store, noisy.id) if p.chosen.startswith("bad")]
    assert len(flipped) == round(0.5 * 101) == noisy.recipe["flipped"]
    assert all("flipped" in p.flags for p in flipped)


def test_dedupe_filter_and_sample(memory_store):
    _dataset(memory_store)
    assert count_pairs(memory_store, transforms.dedupe(memory_store, "d", into="u").id) == 100
    kept = transforms.filter_dataset(memory_store, "d", search="good 7", keep=True, into="s")
    assert [p.prompt for p in iter_pairs(memory_store, kept.id)] == ["p7"]
    dropped = transforms.filter_dataset(memory_store, "d", check="duplicate", into="c")
    assert count_pairs(memory_store, dropped.id) == 100
    sample = transforms.sample_dataset(memory_store, "d", 10, seed=0, into="x")
    assert count_pairs(memory_store, sample.id) == 10 and sample.recipe["n"] == 10
