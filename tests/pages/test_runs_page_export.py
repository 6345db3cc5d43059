"""The Runs page's "Export as Space" action (AppTest): a completed run becomes a Space folder under
the workspace's exports, and the page says where it is and how to run or push it."""

import pytest
from streamlit.testing.v1 import AppTest

from dpo_core.demo.config import load_config
from dpo_core.publish.sample_run import RUN_ID, make_sample_run
from dpo_core.store import dumps, now
from tests.support import open_page

LABEL = "Export as Space"


def runs_page(run_id: str):
    return open_page("pages/runs.py", run_id=run_id)


def export_buttons(at: AppTest) -> list:
    return [b for b in at.button if b.label == LABEL]


def test_export_as_space_writes_the_folder_and_shows_how_to_run_it(lab, store):
    make_sample_run(lab, store)
    at = runs_page(RUN_ID)
    out = lab.exports / f"{RUN_ID}-space"
    assert not out.exists()

    export_buttons(at)[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    for name in ("app.py", "README.md", "requirements.txt", "space_config.json",
                 "adapter/adapter_config.json", "base/config.json"):
        assert (out / name).is_file(), name
    assert load_config(out / "space_config.json").adapter == "adapter"
    assert any(str(out) in m.value for m in at.markdown)
    commands = "\n".join(c.value for c in at.code)
    assert f"cd {out}" in commands and "python app.py" in commands
    assert f"export-space {RUN_ID} --out {out} --force --push" in commands

    again = runs_page(RUN_ID)  # a new session still finds the folder; exporting again replaces
    assert any(str(out) in m.value for m in again.markdown)
    export_buttons(again)[0].click().run()
    assert not again.exception and not again.error
    assert not out.with_name(out.name + ".part").exists()


@pytest.mark.parametrize("status", ["running", "failed", "cancelled"])
def test_unfinished_runs_offer_no_export(lab, store, status):
    with store.write() as conn:
        conn.execute("INSERT INTO runs(id, name, status, config_json, created, started, step, "
                     "total_steps) VALUES(?,?,?,?,?,?,?,?)",
                     ("r-open", "open", status, dumps({"model": "builtin:tiny"}), now(), now(),
                      2, 4))
    assert not export_buttons(runs_page("r-open"))


def test_a_run_without_final_model_explains_instead_of_crashing(lab, store):
    with store.write() as conn:
        conn.execute("INSERT INTO runs(id, name, status, config_json, run_dir, created, finished)"
                     " VALUES(?,?,?,?,?,?,?)", ("r-empty", "empty", "completed",
                                                dumps({"model": "builtin:tiny"}),
                                                str(lab.runs / "r-empty"), now(), now()))
    at = runs_page("r-empty")
    export_buttons(at)[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("final folder" in e.value and "Fix:" in e.value for e in at.error)
    assert not (lab.exports / "r-empty-space").exists()
