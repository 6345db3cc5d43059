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


def _tab(at, name: str):
    """Open a tab of the page (only the open tab runs)."""
    at.session_state["data_tab"] = name
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


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
    _tab(at, "Review")
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
    _tab(app, "Checks")
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
    _tab(at, "Transform")
    at.selectbox(key="data_op").set_value("sample").run()
    at.number_input(key="data_n").set_value(10).run()
    at.button(key="data_transform").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="data_picker").value == "demo-childes-sample"
    assert any("Created demo-childes-sample" in m.value for m in at.success)  # said, once
    _tab(at, "Browse")
    assert len(_table(at)) == 10
    _tab(at, "Import / Export")
    at.selectbox(key="data_export_fmt").set_value("jsonl").run()
    at.button(key="data_export").click().run()
    assert not at.exception, [e.value for e in at.exception]
    exported = lab.exports / "demo-childes-sample.jsonl"
    assert len(exported.read_text().splitlines()) == 10


def _import(at, name: str, data: bytes, mapping: str = "", **choices) -> None:
    _tab(at, "Import / Export")
    for key, value in choices.items():  # encoding=..., bad_rows=...
        at.selectbox(key=f"data_import_{key}").set_value(value)
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
    _tab(at, "Browse")
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
    _tab(at, "Stats")
    charts = len(at.get("plotly_chart"))
    at.toggle(key="data_tokens").set_value(True).run()
    assert len(at.get("plotly_chart")) == charts + 1
    assert not at.exception, [e.value for e in at.exception]
    assert "Length in tokens (builtin:tiny" in " ".join(t.label for t in at.toggle)
    assert not at.error, [e.value for e in at.error]
    _tab(at, "Checks")
    at.number_input(key="data_max_tokens").set_value(8).run()
    assert not at.exception, [e.value for e in at.exception]
    names = [m.value for m in at.markdown]
    assert "**truncated**" in names
    options = at.selectbox(key="data_check").options
    assert any(o.startswith("truncated (") and not o.startswith("truncated (0)") for o in options)


def test_push_button_without_token_explains_the_fix(at, monkeypatch):
    _tab(at, "Import / Export")
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
    _tab(at, "Import / Export")
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
    assert ids, "the fragment ran before"
    ids = ids[-1:]  # the one the last full run drew
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
    assert any(f"Saved note on pair {pair_id}" in s.value for s in at.success)
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
    _tab(at, "Checks")
    at.button(key="data_show_duplicate").click().run()
    assert at.selectbox(key="data_check").value == "duplicate"
    _tab(at, "Browse")
    filtered = list(_table(at)["id"])
    at.selectbox(key="data_picker").set_value("demo-instruct").run()
    assert at.selectbox(key="data_check").value == "(all)"
    assert len(_table(at)) > 0 and list(_table(at)["id"]) != filtered
    assert not any("No pairs match" in i.value for i in at.info)
    _tab(at, "Checks")
    at.button(key="data_show_duplicate").click().run()
    _import(at, "fresh.csv", b"prompt,chosen,rejected\na,b,c\nd,e,f\n")
    assert at.selectbox(key="data_picker").value == "fresh"
    assert at.selectbox(key="data_check").value == "(all)"
    _tab(at, "Browse")
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


# -- conversations, the pair an action targets, review keys, the model text ------------------
def _hub(lab, name: str = "hub"):
    from dpo_core.data.importer import import_pairs
    from tests.data.conftest import hub_rows

    return import_pairs(_db(lab), hub_rows(), dataset=name).dataset


def test_a_conversation_shows_as_turns_and_is_edited_turn_by_turn(lab):
    ds = _hub(lab)
    at = open_page("pages/data.py", dataset="hub")
    assert _table(at)["prompt"][0] == "user: The one under chair 0.  [after 3 earlier turn(s)]"
    assert _table(at)["chosen"][0] == "assistant: Ball 0 is red."
    roles = [c.caption[0].value for c in at.get("chat_message")][:4]
    assert roles == ["system", "user", "assistant", "user"]
    pair = browse.page(_db(lab), ds.id, limit=1).pairs[0]
    _edit(at, 0, {"chosen": "assistant: typed over"})  # a cell cannot hold the message list
    assert "is a conversation" in " ".join(e.value for e in at.error)
    assert edits.get_pair(_db(lab), pair.id).version == 1
    box = next(t for t in at.text_area if t.label == "chosen · turn 1 · assistant")
    box.input("Ball 0 is crimson.")
    at.button(key="data_conv_save").click().run()
    saved = edits.get_pair(_db(lab), pair.id)
    assert saved.chosen == [{"role": "assistant", "content": "Ball 0 is crimson."}]
    assert saved.prompt == pair.prompt and saved.rejected == pair.rejected


def test_the_model_text_of_a_pair_is_shown_for_the_chosen_model(lab):
    _hub(lab)
    at = open_page("pages/data.py", dataset="hub")
    at.toggle(key="data_preview_on").set_value(True).run()
    at.text_input(key="data_preview_model").input("builtin:tiny").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    code = [c.value for c in at.code]
    assert code[0].startswith("<|im_start|>system\nYou answer in one short sentence.<|im_end|>")
    assert code[1] == "Ball 0 is red.<|im_end|>" and not any('"role"' in c for c in code)
    at.number_input(key="data_preview_max").set_value(80).run()
    assert "✂" in at.code[2].value and any("cut" in m.value for m in at.markdown)


def test_after_a_dataset_switch_actions_target_the_pair_shown(at, lab):
    db = _db(lab)
    childes = browse.page(db, "demo-childes", limit=3).pairs
    at.selectbox(key=f"data_row_{childes[0].dataset_id}").set_value(childes[2].id).run()
    at.selectbox(key="data_picker").set_value("demo-instruct").run()
    instruct = browse.page(db, "demo-instruct", limit=1).pairs[0]
    selector = at.selectbox(key=f"data_row_{instruct.dataset_id}")
    assert selector.value == instruct.id
    assert at.button(key="data_delete").label == f"Delete pair {instruct.id}"
    at.button(key="data_delete").click().run()
    assert edits.get_pair(db, instruct.id).deleted
    assert all(edits.get_pair(db, p.id).version == 1 for p in childes)


def test_an_action_is_refused_when_the_selector_shows_another_pair(at, lab):
    db = _db(lab)
    first, second = browse.page(db, "demo-childes", limit=2).pairs
    assert at.button(key="data_delete").label == f"Delete pair {first.id}"
    at.button(key="data_delete").click()
    at.session_state[f"data_row_{first.dataset_id}"] = second.id  # the browser showed another
    at.run()
    assert "Nothing was done" in " ".join(e.value for e in at.error)
    assert not edits.get_pair(db, first.id).deleted and not edits.get_pair(db, second.id).deleted


def test_the_pair_another_page_names_is_opened(lab):
    open_page("pages/home.py")  # the first start seeds the demo datasets
    db = _db(lab)
    wanted = browse.page(db, "demo-instruct", limit=40).pairs[37]
    at = open_page("pages/data.py", dataset="demo-instruct", pair_id=wanted.id)
    assert _table(at)["id"][0] == wanted.id
    assert at.selectbox(key=f"data_row_{wanted.dataset_id}").value == wanted.id
    assert any(f"Opened pair {wanted.id}" in i.value for i in at.info)
    assert "pair_id" not in at.session_state  # asked once: paging on stays possible
    at.button(key="data_next").click().run()
    assert _table(at)["id"][0] > wanted.id


def test_review_keys_exist_only_on_the_review_tab_and_act_only_there(at, lab):
    db = _db(lab)
    first = browse.page(db, "demo-childes", limit=1).pairs[0]
    for name in ("Browse", "Checks", "Stats", "Transform"):
        _tab(at, name)
        assert not [b for b in at.button if b.key.startswith("data_review_")], name
    _tab(at, "Review")
    keep = at.button(key="data_review_keep")
    assert keep.label == f"Keep pair {first.id}"
    keep.click()
    at.session_state["data_tab"] = "Stats"  # the key press reached the page after a tab switch
    at.run()
    assert edits.get_pair(db, first.id).version == 1
    assert any("nothing was changed" in w.value for w in at.warning)


def test_a_review_verdict_is_named_and_undone_with_one_key(at, lab):
    db = _db(lab)
    first = browse.page(db, "demo-childes", limit=1).pairs[0]
    _tab(at, "Review")
    at.button(key="data_review_swap").click().run()
    swapped = edits.get_pair(db, first.id)
    assert (swapped.chosen, swapped.rejected) == (first.rejected, first.chosen)
    assert "reviewed" in swapped.tags and len(edits.history(db, first.id)) == 1  # one edit
    said = " ".join(i.value for i in at.info)
    assert f"Swapped chosen and rejected of pair {first.id}" in said and "Press U" in said
    undo = at.button(key="data_review_undo_button")
    assert undo.label == f"Undo on pair {first.id}"
    undo.click().run()
    back = edits.get_pair(db, first.id)
    assert (back.chosen, back.rejected, back.tags) == (first.chosen, first.rejected, [])
    assert f"Pair {first.id}" in " ".join(m.value for m in at.markdown)  # shown again


def test_review_progress_comes_from_the_store_and_the_unreviewed_filter(lab):
    open_page("pages/home.py")  # the first start seeds the demo datasets
    db = _db(lab)
    first = browse.page(db, "demo-instruct", limit=1).pairs[0]
    edits.mark_pair(db, first.id, 1, tag="reviewed")  # reviewed in an earlier session
    at = open_page("pages/data.py", dataset="demo-instruct")
    _tab(at, "Review")
    total = browse.count_matches(db, "demo-instruct")
    assert f"1 of {total:,} pairs in this filter are reviewed" in at.get("progress")[0].proto.text
    at.selectbox(key="data_review_state").set_value("unreviewed").run()
    assert f"Pair {first.id}" not in at.markdown[0].value


def test_label_noise_from_the_page_flips_train_pairs_only(at, lab):
    from dpo_core.data.datasets import get_dataset

    _tab(at, "Transform")
    at.selectbox(key="data_op").set_value("split").run()
    at.number_input(key="data_eval_size").set_value(20.0).run()  # a whole count, not 2000%
    at.button(key="data_transform").click().run()
    assert at.selectbox(key="data_picker").value == "demo-childes-split"
    _tab(at, "Transform")
    at.selectbox(key="data_op").set_value("noise").run()
    at.button(key="data_transform").click().run()
    noisy = get_dataset(_db(lab), "demo-childes-split-noise")
    assert noisy.recipe["splits"] == "train" and noisy.recipe["parent"] == "demo-childes-split"
    assert any("made by noise from demo-childes-split ← demo-childes" in c.value
               for c in at.caption)  # the lineage, by name
    assert not any("flipped" in p.flags for p in browse.page(_db(lab), noisy.id, split="eval",
                                                              limit=100).pairs)


def test_import_form_takes_an_encoding_and_can_skip_bad_rows(at, lab):
    data = "prompt,chosen,rejected\ncafé,oui,non\nthé,,non\n".encode("cp1252")
    _import(at, "fr.csv", data)
    errors = " ".join(e.value for e in at.error)
    assert "is not UTF-8 text" in errors and "cp1252" in errors and "Encoding" in errors
    _import(at, "fr.csv", data, encoding="cp1252", bad_rows="skip")
    assert at.selectbox(key="data_picker").value == "fr"
    assert "1 bad rows were left out" in " ".join(s.value for s in at.success)
    assert at.get("download_button")
    _tab(at, "Browse")
    assert list(_table(at)["prompt"]) == ["café"]
    assert (lab.exports / "fr.bad-rows.csv").read_text().splitlines()[1] == \
        "2,chosen,the field is empty."


def test_search_in_one_field_marks_the_hits(at, lab):
    _hub(lab)
    at.run()
    at.selectbox(key="data_picker").set_value("hub").run()
    at.text_input(key="data_search").input('"chair 3"').run()
    assert list(_table(at)["id"]) == [p.id for p in browse.page(
        _db(lab), "hub", search='"chair 3"').pairs]
    assert any("<mark>chair 3</mark>" in h.proto.body for h in at.get("html"))
    at.multiselect(key="data_search_fields").set_value(["chosen"]).run()
    assert any("No pairs match" in i.value for i in at.info)


def test_transcripts_become_pairs_from_the_page(at, lab):
    from tests.cli.test_data_verbs import CHA

    _tab(at, "Import / Export")
    at.file_uploader(key="data_transcripts_files").set_value([("one.cha", CHA.encode(),
                                                                "text/plain")])
    at.text_input(key="data_transcripts_name").input("talk")
    at.multiselect(key="data_transcripts_clean").set_value(["retracing", "form_markers",
                                                            "fillers", "unintelligible"])
    at.button(key="FormSubmitter:data_transcripts_form-Make pairs").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="data_picker").value == "talk"
    assert any("Made 6 pairs into talk" in s.value for s in at.success)
