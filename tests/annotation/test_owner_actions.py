"""Only owners start runs, import, delete or export: checked in the library calls the pages use
(`dpo_core/access.py`), so an annotator's or viewer's session is refused whatever page or
fragment makes the call, and a refusal changes nothing. The command line and job processes
(no resolver) and the lab's own set-up act as the owner."""

from __future__ import annotations

import pytest

from dpo_core import access
from dpo_core.annotation.accounts import AccessError, login
from dpo_core.builders.job import start_build
from dpo_core.chat.votes import import_space_votes
from dpo_core.data.datasets import delete_dataset, get_dataset
from dpo_core.data.edits import delete_pair
from dpo_core.data.exporter import export_pairs, push_dataset
from dpo_core.data.importer import import_pairs
from dpo_core.data.transcripts import import_transcripts
from dpo_core.evaluation.job import start_evaluation
from dpo_core.jobs.lifecycle import cancel_job, start_job
from dpo_core.jobs.rows import delete_job
from dpo_core.publish.model_export import export_run, push
from dpo_core.publish.space_export import export_space, push_space
from dpo_core.startup import bootstrap
from dpo_core.sweeps.config import SweepConfig
from dpo_core.sweeps.control import create_sweep, extend_sweep, pause_sweep, resume_sweep
from dpo_core.sweeps.imported import import_sweep_export
from dpo_core.training.external_logs import import_training_log
from dpo_core.training.runs import resume_run, start_run
from tests.annotation.helpers import PASSWORD, pairs_dataset, team
from tests.support import tiny_config

ROW = {"prompt": "p", "chosen": "c", "rejected": "r"}
OWNER_ACTIONS = {
    "start a run": lambda s, t: start_run(s, tiny_config(dataset="prefs")),
    "resume a run": lambda s, t: resume_run(s, "run-x"),
    "cancel a job": lambda s, t: cancel_job(s, "run-x"),
    "delete a run": lambda s, t: delete_job(s, "run-x"),
    "start a job": lambda s, t: start_job(s, "eval", {}, "dpo_core.x:y"),
    "start an evaluation": lambda s, t: start_evaluation(s, ["builtin:tiny"], "prefs"),
    "start a generation": lambda s, t: start_build(s, {"dataset": "prefs"}),
    "start a sweep": lambda s, t: create_sweep(s, SweepConfig(base={"dataset": "prefs"})),
    "pause a sweep": lambda s, t: pause_sweep(s, "sweep-x"),
    "resume a sweep": lambda s, t: resume_sweep(s, "sweep-x"),
    "extend a sweep": lambda s, t: extend_sweep(s, "sweep-x", 9),
    "import pairs": lambda s, t: import_pairs(s, [ROW], dataset="new"),
    "import transcripts": lambda s, t: import_transcripts(s, [t / "a.cha"], dataset="new"),
    "import Space votes": lambda s, t: import_space_votes(s, t / "votes.jsonl", "new"),
    "import a training log": lambda s, t: import_training_log(s, t / "trainer_state.json"),
    "import a sweep": lambda s, t: import_sweep_export(s, t / "sweep.csv"),
    "delete a dataset": lambda s, t: delete_dataset(s, "prefs"),
    "delete a pair": lambda s, t: delete_pair(s, 1, 1),
    "export pairs": lambda s, t: export_pairs(s, "prefs", t / "out.jsonl"),
    "push a dataset": lambda s, t: push_dataset(s, "prefs", "me/prefs"),
    "export a model": lambda s, t: export_run(s, "run-x"),
    "push a model": lambda s, t: push(t, "me/model"),
    "export a Space": lambda s, t: export_space(s, "run-x", t / "space"),
    "push a Space": lambda s, t: push_space(t, "me/space"),
}


@pytest.fixture
def lab(store, workspace):
    people = team(store, "ann", viewer=True)
    pairs_dataset(store, 3)
    return store, people


def snapshot(store) -> list:
    return [tuple(r) for table in ("datasets", "pairs", "runs", "sweeps", "settings")
            for r in store.query(f"SELECT * FROM {table}")]


@pytest.mark.parametrize("action", OWNER_ACTIONS)
@pytest.mark.parametrize("who", ["ann", "watcher", None])
def test_only_an_owner_may_start_import_delete_or_export(lab, tmp_path, monkeypatch, action,
                                                        who):
    store, people = lab
    monkeypatch.setattr(access, "_resolver", lambda: people.get(who))
    before = snapshot(store)
    refused = r"(ann \(annotator\)|watcher \(viewer\)) may not" if who else \
        "Nobody is signed in"
    with pytest.raises(AccessError, match=refused):
        OWNER_ACTIONS[action](store, tmp_path)
    assert snapshot(store) == before
    assert not list(tmp_path.glob("out*")) and not (tmp_path / "space").exists()


def test_an_owner_acts_and_the_labs_own_set_up_needs_nobody(lab, tmp_path, monkeypatch):
    store, people = lab
    monkeypatch.setattr(access, "_resolver", lambda: people["boss"])
    assert export_pairs(store, "prefs", tmp_path / "out.jsonl") == 3
    monkeypatch.setattr(access, "_resolver", lambda: None)  # a session before any sign-in
    with access.as_lab():
        import_pairs(store, [ROW], dataset="seeded")
    assert get_dataset(store, "seeded").name == "seeded"
    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    bootstrap()  # the app's first page load (demo data, model preparation): never refused


def test_the_app_asks_the_sessions_account(lab):
    """Through app.py's session: an annotator's own session is refused an owner action in
    the library (the page that would call it is not even in its navigation)."""
    from streamlit.testing.v1 import AppTest

    store, people = lab

    def script():
        import streamlit as st

        from dpo_core.access import set_resolver
        from dpo_core.data.datasets import delete_dataset
        from dpo_core.errors import DPOLabError
        from pages._accounts import acting_account
        from pages._widgets import store

        set_resolver(acting_account)
        try:
            delete_dataset(store(), "prefs")
            st.success("deleted")
        except DPOLabError as exc:
            st.error(exc.message)

    at = AppTest.from_function(script, default_timeout=60)
    at.session_state["_annotation_token"] = login(store, "ann", PASSWORD)
    at.run()
    assert [e.value for e in at.error] == ["ann (annotator) may not delete datasets."]
    assert get_dataset(store, "prefs")
    owner = AppTest.from_function(script, default_timeout=60)
    owner.session_state["_annotation_token"] = login(store, "boss", PASSWORD)
    owner.run()
    assert [s.value for s in owner.success] == ["deleted"]
