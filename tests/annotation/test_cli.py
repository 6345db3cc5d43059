"""`python -m dpo_core annotate ...`: accounts, a task, judging as two annotators, agreement,
a decision and the consensus, each with --json; errors exit 2 with the fix."""

from __future__ import annotations

import io
import json

from dpo_core.cli.main import main
from dpo_core.store import open_store
from tests.annotation.helpers import PASSWORD, pairs_dataset


def run(capsys, *argv: str) -> dict | list:
    assert main([*argv, "--json"]) == 0, capsys.readouterr()
    return json.loads(capsys.readouterr().out)


def test_a_whole_round_from_the_command_line(workspace, capsys, monkeypatch, tmp_path):
    pairs_dataset(open_store(), 4)
    for name, role in (("boss", "owner"), ("ann", "annotator"), ("bob", "annotator")):
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert run(capsys, "annotate", "accounts", "add", name, "--role", role,
                   "--password-stdin")["role"] == role
    assert [a["name"] for a in run(capsys, "annotate", "users", "list")] == \
        ["boss", "ann", "bob"]
    (tmp_path / "g.md").write_text("Prefer **kind** replies.")
    task = run(capsys, "annotate", "task", "create", "t", "--dataset", "prefs", "--k", "2",
               "--guidelines", str(tmp_path / "g.md"))
    assert (task["pairs"], task["k"], task["guidelines"]) == (4, 2, "Prefer **kind** replies.")
    for who, choice in (("ann", "A"), ("bob", "tie")):
        while (item := run(capsys, "annotate", "judge", "t", "--as", who)) is not None:
            assert "chosen" not in item and "rejected" not in item
            run(capsys, "annotate", "judge", "t", "--as", who, "--pair", str(item["pair_id"]),
                "--choice", choice)
    shown = run(capsys, "annotate", "task", "status", "t")
    assert shown["progress"]["complete"] == 4
    assert shown["progress"]["per_annotator"] == {"ann": 4, "bob": 4}
    got = run(capsys, "annotate", "agreement", "t")
    assert got["raw"] == 0.0 and len(got["disagreements"]) == 4
    first = got["disagreements"][0]["pair_id"]
    run(capsys, "annotate", "adjudicate", "t", str(first), "rejected")
    made = run(capsys, "annotate", "consensus", "t", "--into", "agreed")
    assert made["dataset"] == "agreed" and made["recipe"]["kept"] == 1
    assert made["recipe"]["swapped"] == 1 and made["recipe"]["dropped"] == {"undecided": 3}
    assert main(["annotate", "agreement", "t"]) == 0
    assert "disagreements to adjudicate: 3" in capsys.readouterr().out


def test_errors_exit_2_with_the_fix(workspace, capsys):
    pairs_dataset(open_store(), 2)
    assert main(["annotate", "task", "create", "t", "--dataset", "prefs", "--k", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: k is 3 but only 1 account(s) can judge (local).")
    assert "Fix: Lower k to 1" in err
    assert main(["annotate", "judge", "nope", "--as", "ann", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["kind"] == "NotFoundError"


def test_an_oidc_account_is_added_without_a_password(workspace, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    run(capsys, "annotate", "accounts", "add", "boss", "--role", "owner", "--password-stdin")
    monkeypatch.setattr("getpass.getpass", lambda *_: (_ for _ in ()).throw(AssertionError))
    made = run(capsys, "annotate", "accounts", "add", "Ann@Uni.edu", "--oidc")  # never asked
    assert (made["name"], made["role"], made["oidc"]) == ("ann@uni.edu", "annotator", True)
    assert main(["annotate", "accounts", "list"]) == 0
    assert "ann@uni.edu  annotator  (OIDC sign-in)" in capsys.readouterr().out
