"""`python -m dpo_core data ...` end to end in-process."""

from __future__ import annotations

import json

from dpo_core.cli import main


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
