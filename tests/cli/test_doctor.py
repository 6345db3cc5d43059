"""The CLI entry point: help, doctor, clear errors."""

import json

from dpo_core.cli.main import main
from tests.support import cli


def test_help_lists_the_verbs():
    out = cli(None, "--help")
    assert out.returncode == 0
    for verb in ("prepare-model", "doctor"):
        assert verb in out.stdout


def test_doctor_json_reports_versions_device_and_workspace(workspace, capsys):
    code = main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["ready"] else 1) and (report["ready"] or report["problems"])
    assert report["packages"]["torch"].startswith("2.13.0")
    assert report["device"]["kind"] in ("cpu", "cuda", "mps")
    assert report["workspace"]["home"] == str(workspace.home)
    assert report["default_model"]["spec"] == "builtin:smollm2-135m-instruct"
    assert isinstance(report["problems"], list)


def test_errors_exit_2_with_one_clear_line(workspace, capsys):
    assert main(["prepare-model", "builtin:nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown builtin model") and "Fix:" in err
