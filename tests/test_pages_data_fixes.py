"""Data page fixes (AppTest): typed text saved on click, per-dataset filters, unsaved grid edits,
readable history times, a current "last edit" caption and import messages where the user is."""

import re
from functools import partial
from unittest import mock

import pytest
from conftest import REPO
from streamlit.runtime.scriptrunner import RerunData
from streamlit.testing.v1 import AppTest
from test_pages_data import _db, _import, _table

from dpo_core.data import edits

IMPORT_TAB = 5


@pytest.fixture
def lab(workspace_with_tiny, monkeypatch):
    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    return workspace_with_tiny


@pytest.fixture
def at(lab):
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.run()
    app.switch_page("pages/data.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _fragment_run(at, fragment: str) -> None:
    """Rerun only the page's `fragment` function, as a browser does after a click inside it
    (AppTest itself always reruns the whole page). Uses AppTest internals: test-only."""
    stored = at._fragment_storage._fragments
    ids = [fid for fid, fn in stored.items()
           if any(getattr(c.cell_contents, "__name__", "") == fragment
                  for c in fn.__closure__ or ())]
    assert len(ids) == 1, ids
    with mock.patch("streamlit.testing.v1.local_script_runner.RerunData",
                    partial(RerunData, fragment_id_queue=ids)):
        at.run()
    assert not at.exception, [e.value for e in at.exception]


def _note_box(at):
    return next(t for t in at.text_input if t.label == "Note")


def test_note_typed_then_saved_without_enter_is_saved(at, lab):
    pair_id = int(_table(at)["id"][0])
    _note_box(at).input("first note")  # no Enter: the click alone must carry the text
    at.button(key="data_save_note").click().run()
    pair = edits.get_pair(_db(lab), pair_id)
    assert (pair.note, pair.version) == ("first note", 2)
    assert any(f"Saved note on {pair_id}" in s.value for s in at.success)
    assert _note_box(at).value == "first note"


def test_tag_added_with_one_click_and_empty_tag_explained(at, lab):
    pair_id = int(_table(at)["id"][0])
    at.button(key="data_add_tag").click().run()  # nothing typed: a message, no edit
    assert any("Type a tag" in e.value for e in at.error)
    assert edits.get_pair(_db(lab), pair_id).version == 1
    at.text_input(key="data_new_tag").input("good")
    at.button(key="data_add_tag").click().run()
    assert edits.get_pair(_db(lab), pair_id).tags == ["good"]
    assert not at.exception, [e.value for e in at.exception]


def test_check_filter_resets_when_the_dataset_changes(at, lab):
    at.button(key="data_show_duplicate").click().run()
    assert at.selectbox(key="data_check").value == "duplicate"
    filtered = list(_table(at)["id"])
    at.selectbox(key="data_picker").set_value("demo-instruct").run()
    assert at.selectbox(key="data_check").value == "(all)"
    assert len(_table(at)) > 0 and list(_table(at)["id"]) != filtered
    assert not any("No pairs match" in i.value for i in at.info)
    at.button(key="data_show_duplicate").click().run()
    _import(at, "fresh.csv", b"prompt,chosen,rejected\na,b,c\nd,e,f\n")
    assert at.selectbox(key="data_picker").value == "fresh"
    assert at.selectbox(key="data_check").value == "(all)"
    assert len(_table(at)) == 2


def test_paging_keeps_unsaved_grid_edits_until_saved(at, lab):
    first = list(_table(at)["id"])
    key = at.data_editor[0].key
    at.session_state[key] = {"edited_rows": {0: {"chosen": "*CHI: kept ."}},
                             "added_rows": [], "deleted_rows": []}
    at.button(key="data_next").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert list(_table(at)["id"]) == first  # stayed on the page, edits still there
    assert any("unsaved edits" in w.value for w in at.warning)
    at.button(key="data_save").click().run()
    assert edits.get_pair(_db(lab), first[0]).chosen == "*CHI: kept ."
    at.button(key="data_next").click().run()
    assert min(_table(at)["id"]) > max(first)


def test_discard_drops_unsaved_grid_edits(at, lab):
    first = list(_table(at)["id"])
    at.session_state[at.data_editor[0].key] = {"edited_rows": {0: {"chosen": "*CHI: gone ."}},
                                               "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="data_discard").click().run()
    assert not any("unsaved edits" in w.value for w in at.warning)
    at.button(key="data_next").click().run()
    assert min(_table(at)["id"]) > max(first)
    assert edits.get_pair(_db(lab), first[0]).version == 1


def test_history_shows_a_readable_local_time(at, lab):
    at.button(key="data_swap").click().run()
    history = next(d.value for d in at.dataframe if "at" in d.value.columns)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", str(history["at"][0]))


def test_caption_shows_the_last_edit_after_an_action_in_the_table(at, lab):
    assert any("last edit #0" in c.value for c in at.caption)
    at.button(key="data_swap").click()
    _fragment_run(at, "browse")  # a click in the table reruns only the table in a browser
    captions = [c.value for c in at.caption]
    assert any("last edit #1" in c for c in captions), captions
    at.button(key="data_undo").click()
    _fragment_run(at, "browse")
    assert any("last edit #2" in c.value for c in at.caption)


def test_import_success_shows_in_the_import_tab(at, lab):
    _import(at, "mine.csv", b"prompt,chosen,rejected\na,b,c\nd,e,f\n")
    assert any("Imported 2 pairs" in s.value for s in at.tabs[IMPORT_TAB].success)


def test_import_error_names_the_page_mapping_box_not_the_cli_flag(at, lab):
    _import(at, "odd.csv", b"q,good,bad\nhi,hello,go\n")
    errors = " ".join(e.value for e in at.tabs[IMPORT_TAB].error)
    assert "Column mapping" in errors and "--map" not in errors
    assert "lacks the column(s)" in errors


def test_review_marks_differences_without_striking_the_rejected_text():
    from pages._data_views import word_diff

    chosen, rejected = word_diff("I am <blue> .", "I am green .")
    assert "&lt;blue&gt;" in chosen and "<mark" in chosen and "<mark" in rejected
    assert "<del>" not in rejected and rejected.startswith("I am ")
