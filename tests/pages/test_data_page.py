"""The Data page through app.py (Streamlit AppTest): browse, search, edit, conflict, review;
typed text saved on click, per-dataset filters, unsaved grid edits, readable history times, a
current "last edit" caption and import messages where the user is."""

import re
from functools import partial
from unittest import mock

import pytest
from streamlit.runtime.scriptrunner import RerunData
from streamlit.testing.v1 import AppTest

from dpo_core.data import browse, edits
from dpo_core.store import Store
from tests.support import REPO, open_page


@pytest.fixture
def at(lab):
    return open_page("pages/data.py")


def _db(lab) -> Store:
    return Store(lab.db_path)


def _table(at):
    return at.data_editor[0].value


def _edit(at, row: int, changes: dict) -> None:
    """Edit cells of the page's editor (as a user typing into them), then press Save."""
    key = at.data_editor[0].key
    at.session_state[key] = {"edited_rows": {row: changes}, "added_rows": [], "deleted_rows": []}
    at.button(key="data_save").click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_table_shows_a_page_of_demo_childes_pairs(at):
    assert at.selectbox(key="data_picker").value == "demo-childes"
    table = _table(at)
    assert 0 < len(table) <= 25
    assert table["chosen"].str.startswith("*CHI:").all()
    assert list(table["id"]) == sorted(table["id"])
    first_page = list(table["id"])
    at.button(key="data_next").click().run()
    assert min(_table(at)["id"]) > max(first_page)
    at.button(key="data_prev").click().run()
    assert list(_table(at)["id"]) == first_page


def test_search_narrows_the_table(at):
    total = len(_table(at))
    at.text_input(key="data_search").input("pink").run()
    table = _table(at)
    assert 0 < len(table) <= total
    text = (table["prompt"] + " " + table["chosen"] + " " + table["rejected"]).str.lower()
    assert text.str.contains("pink").all()
    captions = " ".join(c.value for c in at.caption)
    assert "matching pairs" in captions


def test_edit_saves_and_records_history(at, lab):
    pair_id = int(_table(at)["id"][0])
    _edit(at, 0, {"chosen": "*CHI: a purple one !"})
    db = _db(lab)
    pair = edits.get_pair(db, pair_id)
    assert pair.chosen == "*CHI: a purple one !" and pair.version == 2
    history = edits.history(db, pair_id)
    assert history[-1]["after"] == {"chosen": "*CHI: a purple one !"}
    assert any("Saved 1 row" in s.value for s in at.success)
    assert _table(at)["chosen"][0] == "*CHI: a purple one !"
    at.button(key="data_undo").click().run()
    assert edits.get_pair(db, pair_id).chosen != "*CHI: a purple one !"


def test_stale_edit_shows_conflict_and_overwrites_nothing(at, lab):
    pair_id = int(_table(at)["id"][0])
    db = _db(lab)
    edits.update_pair(db, pair_id, {"chosen": "*CHI: from the other tab ."}, 1)  # another tab
    _edit(at, 0, {"chosen": "*CHI: mine ."})
    assert edits.get_pair(db, pair_id).chosen == "*CHI: from the other tab ."
    assert any("Conflict" in w.value for w in at.warning)
    shown = " ".join(str(j.value) for j in at.json)
    assert "from the other tab" in shown and "mine" in shown


def test_review_keep_and_swap(at, lab):
    db = _db(lab)
    first = browse.page(db, "demo-childes", limit=2).pairs
    at.button(key="data_review_keep").click().run()
    at.button(key="data_review_swap").click().run()
    assert not at.exception
    kept, swapped = edits.get_pair(db, first[0].id), edits.get_pair(db, first[1].id)
    assert "reviewed" in kept.tags and kept.chosen == first[0].chosen
    assert (swapped.chosen, swapped.rejected) == (first[1].rejected, first[1].chosen)


def test_check_filter_and_dataset_from_other_page(lab):
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.run()
    app.session_state["dataset"] = "demo-instruct"
    app.switch_page("pages/data.py").run()
    assert app.selectbox(key="data_picker").value == "demo-instruct"
    app.button(key="data_show_length_imbalance").click().run()
    assert app.selectbox(key="data_check").value == "length_imbalance"
    assert not app.exception, [e.value for e in app.exception]


def test_row_actions_tag_flag_swap_delete_restore(at, lab):
    db = _db(lab)
    pair = edits.get_pair(db, int(_table(at)["id"][0]))
    at.text_input(key="data_new_tag").input("good")  # typed, then clicked: no Enter between
    at.button(key="data_add_tag").click().run()
    at.text_input(key="data_new_flag").input("typo")
    at.button(key="data_add_flag").click().run()
    at.button(key="data_swap").click().run()
    after = edits.get_pair(db, pair.id)
    assert after.tags == ["good"] and after.flags == ["typo"]
    assert (after.chosen, after.rejected) == (pair.rejected, pair.chosen)
    at.button(key="data_delete").click().run()
    assert edits.get_pair(db, pair.id).deleted
    assert pair.id not in list(_table(at)["id"])
    at.toggle(key="data_deleted").set_value(True).run()
    assert list(_table(at)["id"]) == [pair.id]
    at.button(key="data_restore").click().run()
    assert not edits.get_pair(db, pair.id).deleted
    assert [h["action"] for h in edits.history(db, pair.id)] == \
        ["mark", "mark", "swap", "delete", "restore"]
    assert not at.exception, [e.value for e in at.exception]


def test_transform_makes_a_dataset_and_export_offers_a_download(at, lab):
    at.selectbox(key="data_op").set_value("sample").run()
    at.number_input(key="data_n").set_value(10).run()
    at.button(key="data_transform").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="data_picker").value == "demo-childes-sample"
    assert len(_table(at)) == 10
    assert any("Created demo-childes-sample" in m.value for m in at.success)  # said, once
    at.selectbox(key="data_export_fmt").set_value("jsonl").run()
    at.button(key="data_export").click().run()
    assert not at.exception, [e.value for e in at.exception]
    exported = lab.exports / "demo-childes-sample.jsonl"
    assert len(exported.read_text().splitlines()) == 10


def _import(at, name: str, data: bytes, mapping: str = "") -> None:
    at.file_uploader(key="data_upload").set_value((name, data, "text/csv"))
    at.text_input(key="data_import_name").input(name.split(".")[0])
    if mapping:
        at.text_input(key="data_import_map").input(mapping)
    at.button(key="FormSubmitter:data_import_form-Import").click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_import_with_a_column_mapping(at, lab):
    _import(at, "mine.csv", b"q,good,bad\nhi,hello there,go away\nbye,see you,whatever\n",
            mapping="prompt=q,chosen=good,rejected=bad")
    assert at.selectbox(key="data_picker").value == "mine"
    assert list(_table(at)["chosen"]) == ["hello there", "see you"]


def test_import_error_names_the_row_and_column_and_imports_nothing(at, lab):
    before = _db(lab).scalar("SELECT COUNT(*) FROM pairs")
    _import(at, "broken.csv", b"prompt,chosen,rejected\na,b,c\nd,,f\n")
    errors = " ".join(e.value for e in at.error)
    assert "chosen" in errors and ("row 2" in errors.lower() or "line 3" in errors.lower())
    assert _db(lab).scalar("SELECT COUNT(*) FROM pairs") == before


def test_search_pages_stay_inside_the_dataset_and_counts_are_capped(store):
    """The library behaviour the table relies on: FTS-driven keyset pages, capped counts."""
    from dpo_core.data.importer import import_pairs

    rows = [{"prompt": f"p{i}", "chosen": f"ball {i}", "rejected": f"r{i}"} for i in range(30)]
    import_pairs(store, rows, dataset="a")
    import_pairs(store, rows, dataset="b")
    seen, after = [], None
    while True:
        pg = browse.page(store, "b", search="ball", after=after, limit=7)
        seen += [p.id for p in pg.pairs]
        if not pg.has_more:
            break
        after = pg.last_id
    b_ids = [p.id for p in browse.page(store, "b", limit=100).pairs]
    assert seen == b_ids
    back = browse.page(store, "b", search="ball", before=b_ids[14], limit=7)
    assert [p.id for p in back.pairs] == b_ids[7:14]
    assert browse.count_matches(store, "b", search="ball", cap=10) == 11
    assert browse.count_matches(store, "b", search="ball", cap=100) == 30
    edits.delete_pair(store, b_ids[0], 1)
    assert browse.count_matches(store, "b", search="ball", cap=100) == 29
    assert browse.page(store, "b", search="ball", deleted=True).pairs[0].id == b_ids[0]


def test_sort_by_chosen_length_pages_forwards_and_back(at):
    at.selectbox(key="data_sort").set_value("-chosen_len").run()
    assert not at.exception, [e.value for e in at.exception]
    first = _table(at)
    lengths = list(first["chosen"].str.len())
    assert lengths == sorted(lengths, reverse=True)
    at.button(key="data_next").click().run()
    second = _table(at)
    assert second["chosen"].str.len().max() <= min(lengths)
    assert not set(second["id"]) & set(first["id"])
    at.button(key="data_prev").click().run()
    assert list(_table(at)["id"]) == list(first["id"])


def test_token_histogram_and_too_long_check_use_the_tiny_tokenizer(at):
    charts = len(at.get("plotly_chart"))
    at.toggle(key="data_tokens").set_value(True).run()
    assert len(at.get("plotly_chart")) == charts + 1
    assert not at.exception, [e.value for e in at.exception]
    assert "Length in tokens (builtin:tiny" in " ".join(t.label for t in at.toggle)
    assert not at.error, [e.value for e in at.error]
    at.number_input(key="data_max_tokens").set_value(8).run()
    assert not at.exception, [e.value for e in at.exception]
    names = [m.value for m in at.markdown]
    assert "**too long**" in names
    options = at.selectbox(key="data_check").options
    assert any(o.startswith("too_long (") and not o.startswith("too_long (0)") for o in options)


def test_push_button_without_token_explains_the_fix(at, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    at.text_input(key="data_push_repo").input("me/childes-pairs")
    at.button(key="FormSubmitter:data_push_form-Push dataset").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = " ".join(e.value for e in at.error)
    assert "No Hugging Face token" in errors and "HF_TOKEN" in errors


def test_push_button_sends_the_dataset_and_links_it(at, monkeypatch):
    import datasets

    sent = {}

    def fake_push(self, repo_id, token=None, private=True, **kwargs):
        sent.update(repo=repo_id, token=token, private=private,
                    splits={k: len(v) for k, v in self.items()}, columns=self["train"].column_names)

    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", fake_push)
    at.text_input(key="data_push_repo").input("me/childes-pairs")
    at.text_input(key="data_push_token").input("hf_secret")
    at.button(key="FormSubmitter:data_push_form-Push dataset").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert sent["repo"] == "me/childes-pairs" and sent["token"] == "hf_secret"
    assert sent["private"] is True and sent["columns"] == ["prompt", "chosen", "rejected"]
    assert sum(sent["splits"].values()) > 0
    assert any("huggingface.co/datasets/me/childes-pairs" in s.value for s in at.success)


# -- actions: forms, filters per dataset, unsaved edits, history, messages --------------------
IMPORT_TAB = 5


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
    _fragment_run(at, "browse_tab")  # a click in the table reruns only the table in a browser
    captions = [c.value for c in at.caption]
    assert any("last edit #1" in c for c in captions), captions
    at.button(key="data_undo").click()
    _fragment_run(at, "browse_tab")
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
    from pages._data_review import word_diff

    chosen, rejected = word_diff("I am <blue> .", "I am green .")
    assert "&lt;blue&gt;" in chosen and "<mark" in chosen and "<mark" in rejected
    assert "<del>" not in rejected and rejected.startswith("I am ")
