"""The Settings page: cluster targets added, edited, refused with the field's words, removed,
and imported from YAML (the same list the CLI and training read)."""

from __future__ import annotations

from dpo_core.cluster.targets import get_target, list_targets
from dpo_core.store import open_store
from tests.support import open_page


def field(at, label):
    for kind in (at.text_input, at.number_input, at.text_area, at.checkbox):
        for w in kind:
            if w.label == label:
                return w
    raise AssertionError(f"no widget {label}")


def test_a_target_is_added_edited_and_removed(lab):
    at = open_page("pages/settings.py")
    assert "No cluster targets yet" in at.info[0].value
    field(at, "name").set_value("gpu")
    field(at, "partition").set_value("a100")
    field(at, "gpus_per_node").set_value(4)
    field(at, "extra_sbatch").set_value("--constraint=nvlink\n--exclusive")
    at.button[0].click().run()  # the form's Save
    assert not at.exception, [e.value for e in at.exception]
    store = open_store(lab.db_path)
    target = get_target(store, "gpu")
    assert (target.partition, target.gpus_per_node) == ("a100", 4)
    assert target.extra_sbatch == ["--constraint=nvlink", "--exclusive"]

    at.selectbox(key="settings_target").set_value("gpu").run()
    field(at, "time_limit").set_value("two hours")
    at.button[0].click().run()
    assert "time_limit is 'two hours'" in at.error[0].value and "HH:MM:SS" in at.error[0].value
    assert get_target(store, "gpu").time_limit == "01:00:00"  # unchanged

    next(b for b in at.button if b.label.startswith("Remove")).click().run()
    assert list_targets(store) == []


def test_targets_import_from_yaml(lab):
    at = open_page("pages/settings.py")
    at.text_area(key="targets_yaml").set_value(
        "targets:\n  - name: cpu\n    partition: short\n    time_limit: '30'\n").run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception
    assert [t.name for t in list_targets(open_store(lab.db_path))] == ["cpu"]
