"""`python -m dpo_core data ...` end to end in-process."""

from __future__ import annotations

import json

from dpo_core.cli.main import main
from dpo_core.data.browse import page
from dpo_core.store import open_store


def test_import_split_noise_checks_export(workspace, tmp_path, capsys):
    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}"}
                               for i in range(10)]))
    assert main(["data", "import", str(src), "--dataset", "d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 10
    assert main(["data", "split", "d", "--eval-size", "3", "--first", "--into", "s"]) == 0
    assert main(["data", "noise", "d", "--flip", "0.5", "--seed", "1", "--into", "n"]) == 0
    assert main(["data", "checks", "n", "--json"]) == 0
    capsys.readouterr()
    assert main(["data", "show", "s", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eval"] == 3
    assert main(["data", "export", "d", "--out", str(tmp_path / "o.jsonl")]) == 0
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 10
    assert main(["data", "import", str(tmp_path / "missing.csv"), "--dataset", "x"]) == 2
    assert "No file" in capsys.readouterr().err


def test_delete_asks_for_yes_then_frees_the_name(workspace, tmp_path, capsys):
    from dpo_core.store import open_store

    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"prompt": f"zqxp{i}", "chosen": f"a{i}", "rejected": f"b{i}"}
                               for i in range(4)]))
    assert main(["data", "import", str(src), "--dataset", "d"]) == 0
    store = open_store()
    ds_id = store.query_one("SELECT id FROM datasets WHERE name='d'")["id"]
    assert main(["data", "import", str(src), "--dataset", "d"]) == 2
    assert "data delete d --yes" in capsys.readouterr().err  # the fix names a real command
    assert main(["data", "delete", "d"]) == 2
    assert "removes its 4 pairs" in capsys.readouterr().err
    assert main(["data", "show", "d"]) == 0  # nothing went without --yes
    assert main(["data", "delete", "d", "--yes"]) == 0
    assert "deleted 'd' (4 pairs)" in capsys.readouterr().out
    assert store.query_one("SELECT count(*) AS n FROM pairs WHERE dataset_id=?",
                           (ds_id,))["n"] == 0
    assert store.query_one("SELECT count(*) AS n FROM pairs_fts WHERE pairs_fts MATCH 'zqxp1'")[
        "n"] == 0
    assert main(["data", "import", str(src), "--dataset", "d"]) == 0  # the name is free again


def test_show_rendered_prints_the_chat_template_text_of_conversations(lab, tmp_path, capsys):
    from tests.data.conftest import SYSTEM, hub_rows

    src = tmp_path / "hub.json"
    src.write_text(json.dumps(hub_rows()))
    assert main(["data", "import", str(src), "--dataset", "hub"]) == 0
    capsys.readouterr()
    assert main(["data", "show", "hub", "--rendered", "--model", "builtin:tiny",
                 "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert f"<|im_start|>system\n{SYSTEM}<|im_end|>" in out
    assert "--- chosen (" in out and "Ball 0 is red.<|im_end|>" in out
    assert '"role"' not in out
    second = page(open_store(), "hub", limit=2).pairs[1].id
    assert main(["data", "show", "hub", "--rendered", "--model", "builtin:tiny", "--pair",
                 str(second), "--max-length", "40", "--max-prompt-length", "0", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["rendered"][0]
    assert shown["pair_id"] == second and shown["chosen_cut"] > 0
    assert "✂" in shown["marked"]["chosen"]
    other = page(open_store(), "demo-childes", limit=1).pairs[0].id
    assert main(["data", "show", "hub", "--rendered", "--pair", str(other)]) == 2
    assert "belongs to another dataset" in capsys.readouterr().err


def test_noise_says_it_flipped_train_pairs_only_and_eval_size_must_be_clear(workspace, tmp_path,
                                                                             capsys):
    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}"}
                               for i in range(10)]))
    assert main(["data", "import", str(src), "--dataset", "d"]) == 0
    assert main(["data", "split", "d", "--eval-size", "1.0", "--into", "s"]) == 2
    assert "ambiguous" in capsys.readouterr().err
    assert main(["data", "split", "d", "--eval-size", "2.5", "--into", "s"]) == 2
    assert main(["data", "split", "d", "--eval-size", "4", "--first", "--into", "s"]) == 0
    capsys.readouterr()
    assert main(["data", "noise", "s", "--flip", "0.5", "--into", "n"]) == 0
    assert "flipped 3 of 6 train pairs (eval pairs left as they are)" in capsys.readouterr().out
    assert main(["data", "noise", "s", "--flip", "0.5", "--all-splits", "--into", "n2"]) == 0
    assert "flipped 5 of 10 pairs (all splits)" in capsys.readouterr().out


def test_import_with_an_encoding_skipping_bad_rows_into_a_report(workspace, tmp_path, capsys):
    src = tmp_path / "fr.tsv"
    src.write_bytes("prompt\tchosen\trejected\ncafé\toui\tnon\nthé\t\tnon\n".encode("cp1252"))
    assert main(["data", "import", str(src), "--dataset", "fr"]) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err and "cp1252" in err
    assert main(["data", "import", str(src), "--dataset", "fr", "--encoding", "cp1252"]) == 2
    assert "row 2, column chosen: the field is empty" in capsys.readouterr().err
    assert main(["data", "import", str(src), "--dataset", "fr", "--encoding", "cp1252",
                 "--bad-rows", "skip", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["pairs"], result["skipped"], result["encoding"]) == (1, 1, "cp1252")
    assert result["report"] == str(workspace.exports / "fr.bad-rows.csv")
    assert (workspace.exports / "fr.bad-rows.csv").read_text().splitlines() == [
        "row,field,reason", "2,chosen,the field is empty."]


def test_checks_lists_the_pairs_failing_one_check(lab, tmp_path, capsys):
    src = tmp_path / "in.json"
    rows = [{"prompt": "*MOT: hi", "chosen": "*CHI: yes", "rejected": "*CHI: no"},
            {"prompt": "*MOT: hi", "chosen": "*CHI: no", "rejected": "*CHI: yes"},
            {"prompt": "*MOT: ok", "chosen": "*CHI: " + "long " * 60, "rejected": "no tag"}]
    src.write_text(json.dumps(rows))
    assert main(["data", "import", str(src), "--dataset", "c"]) == 0
    capsys.readouterr()
    assert main(["data", "checks", "c"]) == 0
    out = capsys.readouterr().out
    assert "contradiction" in out and "length bias: chosen is the longer reply in 33%" in out
    assert main(["data", "checks", "c", "--check", "contradiction", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["count"] == 2 and [p["chosen"] for p in found["pairs"]] == ["*CHI: yes",
                                                                          "*CHI: no"]
    assert main(["data", "checks", "c", "--check", "speaker_tag"]) == 0
    assert "1 pairs of 'c' fail speaker_tag (first 1):" in capsys.readouterr().out
    assert main(["data", "checks", "c", "--check", "truncated", "--model", "builtin:tiny",
                 "--max-length", "48", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 1


CHA = """@Begin
*MOT:\twhat is that ?
*CHI:\t<a a> [/] a doggie@c !
*MOT:\twhere is the ball ?
*CHI:\t&-um the ball is there .
*MOT:\tand this ?
*CHI:\txxx .
*MOT:\tsay bye .
*CHI:\tbye bye now .
*MOT:\tlook !
*CHI:\tI see it .
*MOT:\tand now ?
*CHI:\tmore juice !
*MOT:\tand where ?
*CHI:\tthe cat is here .
@End
"""


def test_transcripts_become_minimal_pairs_with_chat_clean_ups(workspace, tmp_path, capsys):
    src = tmp_path / "one.cha"
    src.write_text(CHA)
    assert main(["data", "transcripts", str(src), "--dataset", "t", "--clean", "retracing",
                 "--clean", "form_markers", "--clean", "fillers", "--clean", "unintelligible",
                 "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["clean"] == ["retracing", "fillers", "unintelligible", "form_markers"]
    pairs = {p.prompt: p for p in page(open_store(), "t", limit=50).pairs}
    assert pairs["*MOT: what is that ?"].chosen == "*CHI: a doggie !"
    assert pairs["*MOT: where is the ball ?"].chosen == "*CHI: the ball is there ."
    assert "*MOT: and this ?" not in pairs  # the child's reply was all unintelligible
    assert all(len(p.rejected.split()) == len(p.chosen.split()) for p in pairs.values())
    assert main(["data", "transcripts", str(src), "--dataset", "u", "--clean", "nope"]) == 2


def test_search_dedupe_filter_sample_and_edits_from_the_command_line(workspace, tmp_path,
                                                                      capsys):
    src = tmp_path / "in.json"
    rows = [{"prompt": f"where is the red ball {i} ?", "chosen": f"under the bed {i}",
             "rejected": f"a balloon {i}"} for i in range(6)]
    rows.append(dict(rows[0]))
    src.write_text(json.dumps(rows))
    assert main(["data", "import", str(src), "--dataset", "d"]) == 0
    capsys.readouterr()
    assert main(["data", "search", "d", "ball*", "--in", "rejected"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("7 pairs match") and "rejected: a [balloon] 0" in out
    assert main(["data", "search", "d", '"red ball 3"', "--json"]) == 0
    assert [p["prompt"] for p in json.loads(capsys.readouterr().out)["pairs"]] == \
        ["where is the red ball 3 ?"]
    assert main(["data", "dedupe", "d", "--into", "u"]) == 0
    assert "'u' (6 pairs) from 'd': dropped 1" in capsys.readouterr().out
    assert main(["data", "filter", "d", "--search", "ball 2", "--keep", "--into", "f"]) == 0
    assert "'f' (1 pairs)" in capsys.readouterr().out
    assert main(["data", "sample", "d", "3", "--into", "s", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 3

    first = page(open_store(), "d", limit=1).pairs[0].id
    assert main(["data", "edit", "d", str(first), "--swap", "--tag", "checked", "--set",
                 "note=looked at", "--json"]) == 0
    edited = json.loads(capsys.readouterr().out)
    assert edited["chosen"] == "a balloon 0" and edited["version"] == 4
    assert main(["data", "edit", "d", str(first), "--set", "chosen=x", "--version", "1"]) == 2
    assert "changed elsewhere" in capsys.readouterr().err
    assert main(["data", "history", "d", str(first)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # one line per edit
    assert main(["data", "undo", "d"]) == 0
    assert main(["data", "undo", "d"]) == 0
    capsys.readouterr()
    assert main(["data", "show", "d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["first"][0]["chosen"] == "under the bed 0"


def test_lineage_is_shown_by_name_and_kept_when_the_parent_goes(workspace, tmp_path, capsys):
    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}"}
                               for i in range(10)]))
    assert main(["data", "import", str(src), "--dataset", "base"]) == 0
    assert main(["data", "split", "base", "--eval-size", "2", "--into", "mid"]) == 0
    assert main(["data", "sample", "mid", "5", "--into", "leaf"]) == 0
    capsys.readouterr()
    assert main(["data", "show", "leaf", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["parent"] == "mid" and shown["lineage"] == "leaf <- mid <- base"
    assert main(["data", "delete", "mid", "--yes"]) == 0
    capsys.readouterr()
    assert main(["data", "show", "leaf", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["parent"] == "mid" and shown["lineage"] == "leaf <- mid (deleted)"
