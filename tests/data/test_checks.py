"""Data checks find the pairs users need to fix, and stay right edit after edit without a
rescan."""

from __future__ import annotations

import random

import pytest

from dpo_core.data import edits, transforms
from dpo_core.data.browse import page
from dpo_core.data.checks import run_checks
from dpo_core.data.edits import update_pair
from dpo_core.data.importer import import_pairs
from dpo_core.store import Store
from tests.support import shared_data


def _rows():
    return [
        {"prompt": "*MOT: a", "chosen": "*CHI: yes", "rejected": "*CHI: no"},
        {"prompt": "*MOT: a", "chosen": "*CHI: yes", "rejected": "*CHI: no"},  # duplicate
        {"prompt": "*MOT: a", "chosen": "*CHI: no", "rejected": "*CHI: yes"},  # contradiction
        {"prompt": "*MOT: b", "chosen": "untagged", "rejected": "*CHI: x"},  # lost tag
        {"prompt": "*MOT: c", "chosen": "*CHI: " + "word " * 30, "rejected": "*CHI: hm"},
        {"prompt": "*MOT: d", "chosen": "*CHI: fine", "rejected": "no tag here"},  # lost tag
    ]


def _ids(store, name="d"):
    return [p.id for p in page(store, name, limit=100).pairs]


def test_each_check_names_the_failing_pairs(memory_store):
    from dpo_core.data.checks import CHECKS

    import_pairs(memory_store, _rows(), dataset="d")
    ids = _ids(memory_store)
    p = edits.get_pair(memory_store, ids[4])
    update_pair(memory_store, p.id, {"rejected": p.chosen}, p.version)  # made identical
    results = run_checks(memory_store, "d")
    assert set(results) == set(CHECKS) - {"chosen_longer"}  # a statistic, asked for apart
    assert set(run_checks(memory_store, "d", statistics=True)) == set(CHECKS)
    assert results["duplicate"]["ids"] == [ids[1]]
    assert results["contradiction"]["ids"] == ids[:3]
    assert results["identical"]["ids"] == [ids[4]]
    assert results["empty"]["count"] == 0


def test_the_speaker_tag_check_looks_at_both_replies(memory_store):
    """A rejected reply without the tag was missed: only chosen was looked at."""
    import_pairs(memory_store, _rows(), dataset="d")
    ids = _ids(memory_store)
    assert run_checks(memory_store, "d")["speaker_tag"]["ids"] == [ids[3], ids[5]]


def test_identical_once_case_punctuation_and_spacing_are_set_aside(memory_store):
    from dpo_core.data.checks import check_ids

    rows = [{"prompt": "q", "chosen": "*CHI: Yes !", "rejected": "*chi:  yes"},
            {"prompt": "q", "chosen": "[{\"role\": 1}]", "rejected": "other"}]
    import_pairs(memory_store, rows, dataset="n")
    ids = _ids(memory_store, "n")
    assert check_ids(memory_store, "n", "normalized_identical") == [ids[0]]
    assert check_ids(memory_store, "n", "identical") == []


def test_near_duplicates_are_found_with_minhash(memory_store):
    from dpo_core.data.checks import check_ids

    story = ("the little dog ran across the big green garden to find the red ball that the "
             "children had thrown over the fence this morning before they went to school and "
             "then it sat under the old apple tree waiting for them to come home for lunch "
             "so that they could all play together again")
    rows = [{"prompt": story, "chosen": "good dog", "rejected": "bad cat"},
            {"prompt": story.replace("morning", "evening"), "chosen": "good dog",
             "rejected": "bad cat"},  # one word differs
            {"prompt": "something else entirely about cooking pasta with garlic and oil",
             "chosen": "good dog", "rejected": "bad cat"},
            {"prompt": story, "chosen": "good dog", "rejected": "bad cat"}]  # exact: duplicate
    import_pairs(memory_store, rows, dataset="near")
    ids = _ids(memory_store, "near")
    assert check_ids(memory_store, "near", "near_duplicate") == [ids[1]]
    assert check_ids(memory_store, "near", "duplicate") == [ids[3]]


def test_dedupe_resolves_contradictions_instead_of_keeping_both(memory_store):
    from dpo_core.data.checks import check_counts, check_ids

    a, b = "*CHI: yes .", "*CHI: no ."
    rows = [{"prompt": "p1", "chosen": a, "rejected": b}, {"prompt": "p1", "chosen": b,
                                                          "rejected": a},
            {"prompt": "p1", "chosen": a.upper(), "rejected": b},  # A>B twice, B>A once
            {"prompt": "p2", "chosen": a, "rejected": b}, {"prompt": "p2", "chosen": b,
                                                          "rejected": a},  # a tie
            {"prompt": "p3", "chosen": a, "rejected": b}, {"prompt": "p3", "chosen": a,
                                                          "rejected": b}]  # a repeat
    import_pairs(memory_store, rows, dataset="c")
    ids = _ids(memory_store, "c")
    assert check_ids(memory_store, "c", "contradiction") == ids[:5]
    clean = transforms.dedupe(memory_store, "c", into="clean")
    kept = [(p.prompt, p.chosen) for p in page(memory_store, clean.id).pairs]
    assert kept == [("p1", a), ("p3", a)]
    assert clean.recipe["ties_dropped"] == 1 and clean.recipe["duplicates"] == 1
    assert check_counts(memory_store, clean.id)["contradiction"] == 0


def test_the_same_prompt_in_train_and_eval_is_leakage(memory_store):
    from dpo_core.data.checks import check_ids

    rows = [{"prompt": f"Question {i}?", "chosen": "yes", "rejected": "no"} for i in range(4)]
    rows.append({"prompt": "question 0", "chosen": "sure", "rejected": "never"})
    import_pairs(memory_store, rows, dataset="l")
    split = transforms.split_dataset(memory_store, "l", 1, first=True, into="ls")
    ids = [p.id for p in page(memory_store, split.id).pairs]
    assert check_ids(memory_store, split.id, "leakage") == [ids[0], ids[4]]
    assert check_ids(memory_store, "l", "leakage") == []  # one split: nothing leaks


def test_truncated_counts_the_rendered_pair_with_a_real_tokenizer(memory_store, tiny_tokenizer):
    rows = [{"prompt": "hi", "chosen": "ok", "rejected": "no"},
            {"prompt": "hi", "chosen": "a long answer " * 20, "rejected": "no"}]
    import_pairs(memory_store, rows, dataset="t")
    ids = _ids(memory_store, "t")
    results = run_checks(memory_store, "t", max_tokens=40, tokenizer=tiny_tokenizer)
    assert results["truncated"]["ids"] == [ids[1]]


def test_length_bias_and_its_filter(memory_store):
    from dpo_core.data.checks import length_bias

    rows = [{"prompt": f"p{i}", "chosen": "a longer reply" if i < 3 else "short",
             "rejected": "short" if i < 3 else "a longer reply"} for i in range(4)]
    import_pairs(memory_store, rows, dataset="b")
    assert length_bias(memory_store, "b") == {"pairs": 4, "chosen_longer": 3, "share": 0.75}
    assert [p.prompt for p in page(memory_store, "b", check="chosen_longer").pairs] == \
        ["p0", "p1", "p2"]


def test_synthetic_childes_set_is_flagged_for_missing_speaker_tags(memory_store):
    from dpo_core.data.checks import check_counts

    import_pairs(memory_store, shared_data("childes-dpo", "huggingface_dpo_format_eval.json"),
                 dataset="real")
    import_pairs(memory_store, shared_data("childes-dpo", "synthetic_dpo_format.json"),
                 dataset="synthetic")
    assert check_counts(memory_store, "synthetic")["speaker_tag"] == 18_000
    assert check_counts(memory_store, "real")["speaker_tag"] == 0
    assert run_checks(memory_store, "synthetic", reference="real")["speaker_tag"]["count"] \
        == 18_000


def _edit_at_random(store, name: str, rng: random.Random, texts: list[str]) -> None:
    ids = [p.id for p in page(store, name, limit=1000, deleted=False).pairs]
    pair = edits.get_pair(store, rng.choice(ids))
    action = rng.choice(["swap", "text", "delete", "restore", "split", "undo", "add", "tag",
                         "source"])
    gone = page(store, name, limit=1000, deleted=True).pairs
    if action == "restore" and gone:
        edits.restore_pair(store, gone[0].id, gone[0].version)
        return
    if action == "swap":
        edits.swap_pair(store, pair.id, pair.version)
    elif action == "text":
        field = rng.choice(["prompt", "chosen", "rejected"])
        update_pair(store, pair.id, {field: rng.choice(texts)}, pair.version)
    elif action == "delete":
        edits.delete_pair(store, pair.id, pair.version)
    elif action == "split":
        update_pair(store, pair.id, {"split": rng.choice(["train", "eval"])}, pair.version)
    elif action == "tag":
        edits.mark_pair(store, pair.id, pair.version, tag=rng.choice(["a", "b"]),
                        remove=rng.random() < 0.3)
    elif action == "source":
        update_pair(store, pair.id, {"source": rng.choice(["", "web", "book"])}, pair.version)
    elif action == "add":
        edits.add_pair(store, name, edits.Pair(*rng.sample(texts, 3)))
    else:
        try:
            edits.undo(store, dataset=name)
        except Exception:  # nothing to undo yet, or already undone
            pass


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_results_equal_a_full_recheck_after_any_edits(tmp_path, seed):
    """Checks and the dataset summary, kept up to date edit by edit, equal a recomputation."""
    from dpo_core.data.checks import CHECKS, check_counts, check_ids
    from dpo_core.data.stats import dataset_summary

    rng = random.Random(seed)
    texts = ["*CHI: yes .", "*CHI: no .", "*CHI: Yes!", "untagged", "*MOT: what is that ?",
             "*MOT: what is this ?", "*CHI: a ball .", "*CHI: a big red ball that bounces ."]
    rows = [{"prompt": rng.choice(texts[4:6]), "chosen": c, "rejected": r}
            for c, r in (rng.sample(texts, 2) for _ in range(40))]
    path = tmp_path / "lab.db"
    store = Store(path)
    import_pairs(store, rows, dataset="d")
    check_counts(store, "d")  # the first, full sync
    for _ in range(30):
        _edit_at_random(store, "d", rng, texts)
        check_counts(store, "d")  # a sync after every edit, as the Data page does
    incremental = {name: check_ids(store, "d", name) for name in CHECKS}
    incremental["summary"] = dataset_summary(store, 1)
    with store.write() as conn:
        conn.execute("DELETE FROM check_state")  # forget: the next read recomputes everything
    full = {name: check_ids(store, "d", name) for name in CHECKS}
    full["summary"] = dataset_summary(store, 1)
    assert incremental == full
    assert full["summary"]["total"] == len(page(store, "d", limit=1000).pairs)
    store.close()


def test_batched_signatures_are_datasketchs_own():
    """check_keys.minhashes computes many signatures at once; each equals what datasketch's
    MinHash gives for the same shingles, so its Jaccard estimates hold."""
    from datasketch import MinHash

    from dpo_core.data.check_keys import NUM_PERM, _hash32, minhashes, shingles

    texts = [("what is that", "a ball", "no"), ("hi", "", "yes please now"),
             ("one two three four five", "six", "seven eight")] * 3
    for text, signature in zip(texts, minhashes(texts, chunk=4), strict=True):
        expected = MinHash(num_perm=NUM_PERM, hashfunc=_hash32)
        expected.update_batch(shingles(*text))
        assert (expected.hashvalues == signature).all()
