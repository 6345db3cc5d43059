"""Malformed input: every case raises a DataError naming the problem and leaves the store as it was."""

from __future__ import annotations

import json

import pytest

from dpo_core.data.importer import import_pairs
from dpo_core.errors import DataError

GOOD = {"prompt": "p", "chosen": "a", "rejected": "b"}


def _json(rows) -> bytes:
    return json.dumps(rows).encode()


CASES = [
    # (id, file name, bytes, kwargs, words the message must contain)
    ("empty file", "e.json", b"", {}, ["empty"]),
    ("whitespace only", "w.json", b"  \n ", {}, ["whitespace"]),
    ("latin-1 bytes", "l.csv", "prompt,chosen,rejected\ncaf\xe9,a,b\n".encode("latin-1"), {},
     ["not UTF-8", "line 2"]),
    ("json not a list", "o.json", b'{"prompt": "p"}', {}, ["not a list"]),
    ("json string", "s.json", b'"hello"', {}, ["not a list"]),
    ("empty json list", "el.json", b"[]", {}, ["empty list"]),
    ("broken json", "b.json", b'[{"prompt": "p",', {}, ["not valid JSON", "line 1"]),
    ("row not object", "n.json", _json([GOOD, 5]), {}, ["row 2", "not an object"]),
    ("missing rejected", "m.json", _json([{"prompt": "p", "chosen": "a"}]), {},
     ["rejected"]),
    ("missing column later", "m2.json", _json([GOOD, {"prompt": "p", "chosen": "a"}]), {},
     ["row 2", "rejected"]),
    ("empty chosen", "ec.json", _json([GOOD, {**GOOD, "chosen": "  "}]), {},
     ["row 2", "chosen", "empty"]),
    ("empty prompt", "ep.json", _json([{**GOOD, "prompt": ""}]), {}, ["row 1", "prompt"]),
    ("number chosen", "nc.json", _json([{**GOOD, "chosen": 3}]), {}, ["chosen", "int"]),
    ("null rejected", "nr.json", _json([{**GOOD, "rejected": None}]), {},
     ["rejected", "NoneType"]),
    ("dict prompt", "dp.json", _json([{**GOOD, "prompt": {"a": 1}}]), {}, ["prompt", "dict"]),
    ("identical pair", "id.json", _json([GOOD, {**GOOD, "rejected": "a"}]), {},
     ["row 2", "identical"]),
    ("bad message", "bm.json", _json([{**GOOD, "chosen": [{"role": "a"}]}]), {},
     ["chosen", "role, content"]),
    ("empty messages", "em.json", _json([{**GOOD, "chosen": []}]), {}, ["chosen", "empty"]),
    ("jsonl bad line", "b.jsonl", (json.dumps(GOOD) + "\n{oops\n").encode(), {},
     ["row 2", "not valid JSON"]),
    ("jsonl list line", "l.jsonl", (json.dumps(GOOD) + "\n[1]\n").encode(), {},
     ["row 2", "not an object"]),
    ("csv header only", "h.csv", b"prompt,chosen,rejected\n", {}, ["no data rows"]),
    ("csv ragged row", "r.csv", b"prompt,chosen,rejected\na,b\n", {}, ["row 1", "2 cells"]),
    ("csv missing column", "mc.csv", b"prompt,chosen\na,b\n", {}, ["rejected"]),
    ("csv empty cell", "ce.csv", b"prompt,chosen,rejected\na,,c\n", {}, ["chosen", "empty"]),
    ("map names absent column", "mp.csv", b"q,a,b\nx,y,z\n",
     {"mapping": {"prompt": "question", "chosen": "a", "rejected": "b"}}, ["question"]),
    ("childes no tab", "c1.csv", b",pospair,negpair\n0,*MOT: hi *CHI: yo,*MOT: hi\t*CHI: no\n",
     {}, ["row 1", "pospair", "TAB"]),
    ("childes prompts differ", "c2.csv",
     b",pospair,negpair\n0,*MOT: hi\t*CHI: yo,*MOT: bye\t*CHI: no\n", {}, ["row 1", "differ"]),
    ("childes identical", "c3.csv",
     b",pospair,negpair\n0,*MOT: hi\t*CHI: yo,*MOT: hi\t*CHI: yo\n", {}, ["identical"]),
    ("childes empty turn", "c4.csv",
     b",pospair,negpair\n0,*MOT: hi\t,*MOT: hi\t*CHI: no\n", {}, ["row 1", "empty"]),
    ("unknown extension", "x.txt", b"hello", {}, ["extension", "--format"]),
    ("unknown format", "g.json", _json([GOOD]), {"format": "xml"}, ["Unknown format"]),
    ("too big", "big.json", _json([GOOD] * 50), {"max_bytes": 100}, ["over the import limit"]),
    ("too many rows", "many.json", _json([{**GOOD, "prompt": str(i)} for i in range(5)]),
     {"max_rows": 3}, ["more than the limit"]),
    ("choice index out of range", "mc.json",
     _json([{"context": "c", "choices": ["a", "b"], "answer": 2}]), {}, ["answer", "outside"]),
    ("choice index not a number", "mc2.json",
     _json([{"context": "c", "choices": ["a", "b"], "answer": "x"}]), {}, ["answer"]),
    ("no shared prompt", "imp.json", _json([{"chosen": "abc", "rejected": "xyz"}]), {},
     ["share no prompt"]),
    ("parquet garbage", "p.parquet", b"not parquet at all", {}, ["Parquet"]),
    # issue 16: crashes and silent mistakes, now refusals naming the row and field
    ("json nested too deep", "deep.json",
     b'[{"prompt": "p", "chosen": "a", "rejected": "b", "x": ' + b"[" * 100_000 +
     b"]" * 100_000 + b"}]", {}, ["row 1", "nested too deeply"]),
    ("jsonl nested too deep", "deep.jsonl", (json.dumps(GOOD) + "\n").encode() +
     b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", {},
     ["row 2", "nested too deeply"]),
    ("lone surrogate", "ls.json", b'[{"prompt": "a\\ud800b", "chosen": "a", "rejected": "b"}]',
     {}, ["row 1", "column prompt", "lone surrogate"]),
    ("lone surrogate in a message", "lsm.json",
     b'[{"prompt": "p", "chosen": [{"role": "assistant", "content": "\\udfff"}], '
     b'"rejected": [{"role": "assistant", "content": "no"}]}]', {},
     ["row 1", "column chosen", "lone surrogate"]),
    ("lone surrogate in a kept column", "lse.jsonl",
     b'{"prompt": "p", "chosen": "a", "rejected": "b", "note": "\\ud83d"}\n', {},
     ["row 1", "column note", "lone surrogate"]),
    ("duplicate json key", "dk.json",
     b'[{"prompt": "p", "chosen": "a", "chosen": "b", "rejected": "c"}]', {},
     ["row 1", "column chosen", "appears twice"]),
    ("duplicate csv column", "dc.csv", b"prompt,chosen,chosen,rejected\np,a,b,c\n", {},
     ["chosen", "appears twice", "columns 2 and 3"]),
    ("utf-16 without a mark", "u16.csv", "prompt,chosen,rejected\np,a,b\n".encode("utf-16-le"),
     {}, ["not UTF-8", "UTF-16", "--encoding utf-16"]),
    ("cp1252 bytes", "w.csv", "prompt,chosen,rejected\n\u201cquoted\u201d,a,b\n".encode("cp1252"),
     {}, ["not UTF-8", "line 2", "cp1252", "--encoding"]),
    ("unknown encoding", "e.csv", b"prompt,chosen,rejected\np,a,b\n", {"encoding": "nope"},
     ["unknown encoding 'nope'"]),
    ("json list not closed", "nc.json", b'[{"prompt": "p", "chosen": "a", "rejected": "b"}', {},
     ["not closed"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_store_unchanged(memory_store, tmp_path, case):
    _, name, data, kwargs, words = case
    import_pairs(memory_store, [GOOD], dataset="existing")
    before = memory_store.query("SELECT * FROM pairs"), memory_store.query("SELECT * FROM datasets")
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        import_pairs(memory_store, path, dataset="new", **kwargs)
    message = str(err.value)
    for word in words:
        assert word in message
    if name not in ("x.txt",) and "format" not in kwargs:
        assert name in message or "Unknown" in message
    after = memory_store.query("SELECT * FROM pairs"), memory_store.query("SELECT * FROM datasets")
    assert [list(map(tuple, t)) for t in after] == [list(map(tuple, t)) for t in before]


def test_missing_file_and_duplicate_name(memory_store, tmp_path):
    with pytest.raises(DataError, match="No file"):
        import_pairs(memory_store, tmp_path / "nope.json", dataset="a")
    import_pairs(memory_store, [GOOD], dataset="a")
    with pytest.raises(DataError, match="already exists"):
        import_pairs(memory_store, [GOOD], dataset="a")
    assert memory_store.scalar("SELECT COUNT(*) FROM pairs") == 1
