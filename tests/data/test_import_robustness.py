"""Import takes the files users really have: TSV, huge cells, other encodings, extra columns,
files read in chunks with progress, bad rows skipped and reported on request; a hub id offline
fails at once with the offline fix."""

from __future__ import annotations

import csv
import json

import pytest

from dpo_core.data.browse import page
from dpo_core.data.datasets import get_dataset, iter_pairs
from dpo_core.data.exporter import export_pairs
from dpo_core.data.importer import import_pairs
from dpo_core.errors import DataError


def _records(store, name):
    return [p.as_record() for p in iter_pairs(store, get_dataset(store, name).id)]


def test_tsv_by_extension_and_a_tab_separated_csv_by_its_header(memory_store, tmp_path):
    rows = [{"prompt": "a, b", "chosen": "yes, please", "rejected": "no"}]
    for name in ("t.tsv", "t.csv"):
        (tmp_path / name).write_text("prompt\tchosen\trejected\na, b\tyes, please\tno\n")
        import_pairs(memory_store, tmp_path / name, dataset=name)
        assert _records(memory_store, name) == rows


def test_a_300k_character_cell_is_imported(memory_store, tmp_path):
    """It was refused by csv's 131,072-character field limit, with no row number."""
    long = "word " * 60_000
    path = tmp_path / "long.csv"
    path.write_text(f"prompt,chosen,rejected\nshort,ok,no\np,\"{long}\",no\n")
    assert import_pairs(memory_store, path, dataset="long").count == 2
    assert _records(memory_store, "long")[1]["chosen"] == long


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_an_encoding_given_reads_the_text_right(memory_store, tmp_path, encoding):
    text = "prompt,chosen,rejected\ncafé,crème brûlée,no\n"
    path = tmp_path / "fr.csv"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        import_pairs(memory_store, path, dataset="guess")
    result = import_pairs(memory_store, path, dataset="fr", encoding=encoding)
    assert result.encoding == encoding
    assert _records(memory_store, "fr") == [{"prompt": "café", "chosen": "crème brûlée",
                                             "rejected": "no"}]


def test_utf16_with_a_byte_order_mark_is_read_as_it_says(memory_store, tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("prompt,chosen,rejected\nnaïve,ja,nein\n", encoding="utf-16")
    assert import_pairs(memory_store, path, dataset="u").encoding == "utf-16"
    assert _records(memory_store, "u")[0]["prompt"] == "naïve"


def test_extra_columns_are_kept_shown_filterable_and_exported(memory_store, tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}", "rating": i,
             "status": "ok" if i % 2 else "check", "ids": {"src": i}} for i in range(6)]
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = import_pairs(memory_store, path, dataset="x").dataset
    first = next(iter_pairs(memory_store, ds.id))
    assert first.meta == {"columns": {"rating": 0, "status": "check", "ids": {"src": 0}}}
    assert [p.prompt for p in page(memory_store, "x", column="rating>=4").pairs] == ["p4", "p5"]
    assert [p.prompt for p in page(memory_store, "x", column="status=ok").pairs] == \
        ["p1", "p3", "p5"]
    assert [p.prompt for p in page(memory_store, "x", column="rating=2").pairs] == ["p2"]
    with pytest.raises(DataError, match="COLUMN OP VALUE"):
        page(memory_store, "x", column="rating")
    export_pairs(memory_store, "x", tmp_path / "back.jsonl")
    assert (tmp_path / "back.jsonl").read_text() == path.read_text()


def test_bad_rows_refuse_the_file_or_are_skipped_and_reported(memory_store, tmp_path):
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    lines = [good, {**good, "chosen": ""}, "not json", {**good, "rejected": "a"},
             {"prompt": "q"}, good]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join((json.dumps(r) if isinstance(r, dict) else r) + "\n" for r in lines))
    with pytest.raises(DataError, match="row 2, column chosen: the field is empty"):
        import_pairs(memory_store, path, dataset="all-or-nothing")
    assert memory_store.scalar("SELECT COUNT(*) FROM datasets") == 0
    report = tmp_path / "bad.csv"
    result = import_pairs(memory_store, path, dataset="good", bad_rows="skip", report=report)
    assert result.count == 2 and result.skipped == 4
    with report.open(newline="") as fh:
        listed = list(csv.reader(fh))
    assert listed[0] == ["row", "field", "reason"]
    assert [r[:2] for r in listed[1:]] == [["2", "chosen"], ["3", ""], ["4", ""],
                                           ["5", "chosen"]]
    assert "identical" in listed[3][2] and "not valid JSON" in listed[2][2]
    assert result.bad_rows[0] == {"row": 2, "field": "chosen", "reason": "the field is empty."}
    assert get_dataset(memory_store, "good").recipe["import"]["skipped"] == 4


def test_a_file_of_only_bad_rows_is_refused_even_when_skipping(memory_store, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"prompt": "p", "chosen": "a", "rejected": "a"}]))
    with pytest.raises(DataError, match="none of its 1 rows could be imported"):
        import_pairs(memory_store, path, dataset="none", bad_rows="skip")
    assert memory_store.scalar("SELECT COUNT(*) FROM datasets") == 0


def test_a_json_list_read_in_tiny_chunks_gives_the_same_rows(memory_store, tmp_path,
                                                             monkeypatch):
    from dpo_core.data import readers

    rows = [{"prompt": f"p{i} " * (i + 1), "chosen": [{"role": "assistant", "content": "a"}],
             "rejected": [{"role": "assistant", "content": f"b{i}"}]} for i in range(20)]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, indent=1))
    monkeypatch.setattr(readers, "CHUNK", 7)  # every row crosses several chunk ends
    seen = []
    import_pairs(memory_store, path, dataset="chunks",
                 progress=lambda fraction, message: seen.append(fraction))
    assert _records(memory_store, "chunks") == rows
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def test_a_hub_id_offline_fails_at_once_with_the_offline_fix(memory_store, monkeypatch):
    import datasets

    from dpo_core.data import readers

    def never(*args, **kwargs):
        raise AssertionError("load_dataset must not be tried when the hub does not answer")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", never)
    monkeypatch.setattr(readers, "hub_reachable", lambda timeout=1.0: False)
    with pytest.raises(DataError) as err:
        import_pairs(memory_store, "someone/some-pairs", dataset="h")
    assert "did not answer within 1 s" in err.value.message
    assert "HF_HUB_OFFLINE=1" in err.value.fix and "data import FILE" in err.value.fix
    assert memory_store.scalar("SELECT COUNT(*) FROM datasets") == 0


def test_the_hub_probe_gives_up_after_its_timeout(monkeypatch):
    import socket

    from dpo_core.data import readers

    def hang(*args, **kwargs):
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", hang)
    assert readers.hub_reachable(timeout=0.2) is False


@pytest.mark.slow
def test_a_large_file_streams_in_a_fixed_amount_of_memory(memory_store, tmp_path):
    """Python's peak allocation while importing is a fixed few chunks, far below the file's
    size (the old reader held the whole text, every record and every row at once)."""
    import tracemalloc

    path = tmp_path / "big.jsonl"
    with path.open("w") as fh:
        for i in range(40_000):
            fh.write(json.dumps({"prompt": f"question {i} " + "x" * 200, "chosen": f"good {i}",
                                 "rejected": f"bad {i}", "score": i}) + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        assert import_pairs(memory_store, path, dataset="big").count == 40_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 8_000_000 and peak < 4_000_000, (size, peak)
