"""`python -m dpo_core data ...` end to end in-process."""

from __future__ import annotations

import json

from dpo_core.cli.main import main


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
