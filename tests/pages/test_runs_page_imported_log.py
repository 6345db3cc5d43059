"""The CHILDES metrics CSV (TRL's log of a real DPO run) imports with `python -m dpo_core
import-log` and the Runs page draws its loss and reward curves like the original plots."""

import json
import os
import subprocess
import sys

from streamlit.testing.v1 import AppTest

from tests.support import REPO, shared_data


def import_log(home, path, name: str) -> dict:
    env = {**os.environ, "DPO_LAB_HOME": str(home), "DPO_LAB_NO_PREPARE": "1"}
    done = subprocess.run([sys.executable, "-m", "dpo_core", "import-log", str(path),
                           "--name", name, "--json"], cwd=REPO, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def figures(at: AppTest) -> dict[str, dict]:
    """The page's plotly figures by title."""
    figs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    return {f["layout"]["title"]["text"]: f for f in figs}


def line(fig: dict, name: str) -> dict:
    """The unsmoothed (first) trace of a line: raw values, thinned to at most a few hundred."""
    return next(t for t in fig["data"] if t["name"] == name)


def test_childes_csv_imports_and_draws_loss_and_rewards(workspace, monkeypatch):
    path = shared_data("childes-dpo", "training_metrics_real.csv")
    result = import_log(workspace.home, path, "childes-real")
    assert result["steps"] == 563
    assert {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
            "rewards/accuracies"} <= set(result["keys"])

    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.session_state["run_id"] = result["run_id"]
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value.endswith("childes-real · completed")
    assert any("Imported log (read-only)" in c.value for c in at.caption)

    figs = figures(at)
    loss = line(figs["loss (train, eval dashed)"], "loss")
    assert loss["x"][0] == 10 and loss["x"][-1] == 5630  # the whole run, first to last log
    assert loss["y"][0] > 0.68 and loss["y"][-1] < 0.1  # from ~ln 2 down, as in the original
    rewards = figs["rewards: chosen vs rejected"]
    assert {t["name"] for t in rewards["data"]} == {"rewards/chosen", "rewards/rejected"}
    chosen, rejected = line(rewards, "rewards/chosen"), line(rewards, "rewards/rejected")
    assert chosen["y"][-1] > rejected["y"][-1]  # the trained model prefers the chosen answers
    for title in ("rewards/margins", "rewards/accuracies"):
        assert any(t.startswith(title) for t in figs), title
