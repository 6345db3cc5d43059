"""Paging, edits with versions, conflicts, undo, history, and concurrent writers."""

from __future__ import annotations

import multiprocessing

import pytest

from dpo_core.data import browse, edits
from dpo_core.data.datasets import Pair
from dpo_core.data.importer import import_pairs
from dpo_core.errors import ConflictError
from dpo_core.store import Store


def _dataset(store, n=10, name="d"):
    rows = [{"prompt": f"prompt {i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
            for i in range(n)]
    return import_pairs(store, rows, dataset=name).dataset


def test_keyset_pages_cover_everything_once(memory_store):
    _dataset(memory_store, 25)
    seen, after = [], None
    while True:
        page = browse.page(memory_store, "d", after=after, limit=10)
        seen += [p.id for p in page.pairs]
        if not page.has_more:
            break
        after = page.last_id
    assert len(seen) == len(set(seen)) == 25
    back = browse.page(memory_store, "d", before=seen[10], limit=10)
    assert [p.id for p in back.pairs] == seen[:10]


def test_search_is_quoted_and_filters_work(memory_store):
    _dataset(memory_store, 5)
    assert [p.prompt for p in browse.page(memory_store, "d", search="good 3").pairs] == [
        "prompt 3"]
    assert browse.page(memory_store, "d", search='" AND NEAR(').pairs == []
    p = browse.page(memory_store, "d").pairs[0]
    edits.mark_pair(memory_store, p.id, p.version, tag="check", flag="odd")
    assert [x.id for x in browse.page(memory_store, "d", tag="check").pairs] == [p.id]
    assert [x.id for x in browse.page(memory_store, "d", flag="odd").pairs] == [p.id]


def test_stale_version_is_a_conflict_showing_both(memory_store):
    _dataset(memory_store, 1)
    p = browse.page(memory_store, "d").pairs[0]
    edits.update_pair(memory_store, p.id, {"chosen": "tab one"}, p.version)
    with pytest.raises(ConflictError) as err:
        edits.update_pair(memory_store, p.id, {"chosen": "tab two"}, p.version)
    assert err.value.current["current"]["chosen"] == "tab one"
    assert err.value.current["yours"] == {"chosen": "tab two"}
    assert edits.get_pair(memory_store, p.id).chosen == "tab one"


def test_swap_delete_undo_and_history(memory_store):
    _dataset(memory_store, 2)
    p = browse.page(memory_store, "d").pairs[0]
    p = edits.swap_pair(memory_store, p.id, p.version)
    assert (p.chosen, p.rejected) == ("bad 0", "good 0")
    p = edits.delete_pair(memory_store, p.id, p.version)
    assert len(browse.page(memory_store, "d").pairs) == 1
    edits.undo(memory_store, dataset="d")  # the delete
    p = edits.undo(memory_store, dataset="d")  # the swap
    assert (p.chosen, p.rejected, p.deleted) == ("good 0", "bad 0", False)
    actions = [h["action"] for h in edits.history(memory_store, p.id)]
    assert actions == ["swap", "delete", "undo", "undo"]
    assert p.version == 5


def test_added_pair_can_be_undone(memory_store):
    _dataset(memory_store, 1)
    new = edits.add_pair(memory_store, "d", Pair("q", "yes", "no"))
    assert len(browse.page(memory_store, "d").pairs) == 2
    edits.undo(memory_store, dataset="d")
    assert edits.get_pair(memory_store, new.id).deleted


def _writer(path: str, pair_ids: list[int], n: int, actor: str) -> None:
    store = Store(path)
    for i in range(n):
        pair_id = pair_ids[i % len(pair_ids)]
        while True:
            p = edits.get_pair(store, pair_id)
            try:
                edits.update_pair(store, pair_id, {"note": f"{actor}-{i}"}, p.version, actor)
                break
            except ConflictError:
                continue
    store.close()


def test_three_writers_lose_no_edit(store):
    _dataset(store, 5)
    ids = [p.id for p in browse.page(store, "d").pairs]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(store.path, ids, 1000, f"w{k}")) for k in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    assert all(proc.exitcode == 0 for proc in procs)
    assert store.scalar("SELECT COUNT(*) FROM edits") == 3000
    assert store.scalar("SELECT SUM(version - 1) FROM pairs") == 3000


def _walk(store, sort, limit=4, **filters):
    """Page forwards to the end, then backwards to the start; returns both id orders."""
    forward, after, pages = [], None, []
    while True:
        pg = browse.page(store, "s", after=after, limit=limit, sort=sort, **filters)
        forward += [p.id for p in pg.pairs]
        pages.append(pg)
        if not pg.has_more:
            break
        after = pg.last_key
    backward, before = list(pages[-1].pairs), pages[-1].first_key
    while True:
        pg = browse.page(store, "s", before=before, limit=limit, sort=sort, **filters)
        if not pg.pairs:
            break
        backward = list(pg.pairs) + backward
        before = pg.first_key
    return forward, [p.id for p in backward]


@pytest.mark.parametrize("sort", ["id", "-id", "chosen_len", "-chosen_len", "prompt_len",
                                  "-rejected_len"])
def test_sorted_pages_forwards_and_backwards_have_no_gaps_or_duplicates(memory_store, sort):
    # Many equal lengths, so ties are broken by id across page boundaries.
    rows = [{"prompt": "p" * (i % 3 + 1), "chosen": "c" * (i % 4 + 1) + f" {i}",
             "rejected": "r" * (i % 5 + 1)} for i in range(23)]
    import_pairs(memory_store, rows, dataset="s")
    pairs = browse.page(memory_store, "s", limit=100).pairs
    field, desc = sort.lstrip("-"), sort.startswith("-")
    value = (lambda p: p.id) if field == "id" else (lambda p: len(getattr(p, field[:-4])))
    expected = [p.id for p in sorted(pairs, key=lambda p: (value(p), p.id), reverse=desc)]
    forward, backward = _walk(memory_store, sort)
    assert forward == expected
    assert backward == expected


def test_sorted_pages_respect_filters_and_search(memory_store):
    rows = [{"prompt": f"q{i}", "chosen": ("apple " if i % 2 else "pear ") + "x" * (i % 7),
             "rejected": "no", "split": "eval" if i % 3 == 0 else "train"} for i in range(30)]
    import_pairs(memory_store, rows, dataset="s")
    pairs = browse.page(memory_store, "s", limit=100).pairs
    want = [p.id for p in sorted((p for p in pairs if "apple" in p.chosen),
                                 key=lambda p: (-len(p.chosen), -p.id))]
    assert _walk(memory_store, "-chosen_len", search="apple")[0] == want
    forward, backward = _walk(memory_store, "-id", limit=3, split="eval", search="pear")
    want = sorted((p.id for p in pairs if p.split == "eval" and "pear" in p.chosen),
                  reverse=True)
    assert forward == backward == want


@pytest.mark.parametrize("sort", ["chosen_len", "-prompt_len", "rejected_len"])
def test_length_sorted_pages_seek_the_length_index(memory_store, sort):
    """A page deep in a length order costs what the first one does: every query seeks an
    index to the cursor (no scan up to it, no sort of the whole dataset)."""
    rows = [{"prompt": "p" * (i % 9 + 1), "chosen": "c" * (i % 11 + 1),
             "rejected": "r" * (i % 13 + 1)} for i in range(200)]
    import_pairs(memory_store, rows, dataset="s")
    plans, query = [], memory_store.query

    def explained(sql, params=()):
        if sql.startswith("SELECT p.*"):
            plans.append(" ".join(r[-1] for r in query("EXPLAIN QUERY PLAN " + sql, params)))
        return query(sql, params)

    memory_store.query = explained
    first = browse.page(memory_store, "s", sort=sort, limit=10)
    browse.page(memory_store, "s", sort=sort, limit=10, after=first.last_key)
    browse.page(memory_store, "s", sort=sort, limit=10, before=first.last_key)
    index = "pairs_by_" + sort.lstrip("-")
    assert len(plans) >= 3 and all(index in plan and "TEMP B-TREE" not in plan
                                   for plan in plans), plans
    assert all("<expr>" in plan for plan in plans[1:]), plans  # seeks to the cursor


def test_unknown_sort_is_refused(memory_store):
    _dataset(memory_store, 3)
    with pytest.raises(Exception, match="Unknown sort"):
        browse.page(memory_store, "d", sort="size")
