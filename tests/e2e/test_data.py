"""The Data page in a real browser: search, edit a cell and save, undo, review two pairs; the
Review tab's one-key shortcuts change nothing from other tabs or while typing. Every wait is on
what the page shows (no fixed sleeps)."""

import re

import pytest
from playwright.sync_api import expect

from dpo_core.data import browse, edits
from dpo_core.store import Store
from dpo_core.workspace import get_workspace
from tests.support import StreamlitServer, assert_no_exception, wait_for_app


def _settle(page) -> None:
    wait_for_app(page)
    assert_no_exception(page)


def _edit_first_chosen_cell(page, text: str) -> None:
    """Select row 0's id cell, move to the chosen column, open the editor, replace, commit."""
    grid = page.get_by_test_id("stDataFrame").first
    editor = page.locator("textarea.gdg-input")
    for _ in range(5):  # the grid may still be redrawing after the search: try again
        grid.scroll_into_view_if_needed()
        grid.click(position={"x": 20, "y": 53})
        for _ in range(3):  # id -> version -> prompt -> chosen
            page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        try:
            editor.first.wait_for(timeout=3_000)
            break
        except Exception:
            page.keyboard.press("Escape")
            wait_for_app(page)
    editor.first.fill(text)
    page.keyboard.press("Enter")
    page.get_by_text("1 row(s) with unsaved edits", exact=False).first.wait_for()  # its rerun
    _settle(page)


@pytest.mark.e2e
def test_search_edit_undo_and_review(tmp_path, page):
    home = tmp_path / "lab"
    server = StreamlitServer(home, env={"DPO_LAB_NO_PREPARE": "1"})
    try:
        page.goto(server.url)
        wait_for_app(page)
        page.locator("[data-testid='stSidebarNav'] a", has_text="Data").click()
        page.get_by_role("heading", name="Data").first.wait_for()
        page.get_by_test_id("stDataFrame").first.wait_for()
        _settle(page)
        db = Store(get_workspace(home).db_path)

        page.get_by_role("textbox", name="Search prompt, chosen, rejected").fill("pink")
        page.keyboard.press("Enter")
        hits = browse.page(db, "demo-childes", search="pink", limit=25).pairs
        assert hits, "the demo data has pairs about pink"
        total = db.scalar("SELECT COUNT(*) FROM pairs p JOIN datasets d ON d.id=p.dataset_id "
                          "WHERE d.name='demo-childes'")
        ids = [p.id for p in hits]  # the table shows the hits: wait for their caption
        page.get_by_text(f"showing ids {min(ids)}–{max(ids)}", exact=False).first.wait_for()
        _settle(page)
        assert len(hits) < total
        target = hits[0]

        _edit_first_chosen_cell(page, "*CHI: edited in the browser .")
        page.get_by_role("button", name="Save edits").click()
        _settle(page)
        page.get_by_text("Saved 1 row", exact=False).first.wait_for()
        assert edits.get_pair(db, target.id).chosen == "*CHI: edited in the browser ."

        page.get_by_role("button", name="Undo last edit").click()
        _settle(page)
        page.get_by_text("Undid the last edit", exact=False).first.wait_for()
        assert edits.get_pair(db, target.id).chosen == target.chosen

        page.get_by_role("tab", name="Review").click()
        page.get_by_role("button", name=re.compile(f"^Keep pair {hits[0].id}")).click()
        page.get_by_text(f"Kept pair {hits[0].id}", exact=False).first.wait_for()
        page.get_by_role("button", name=re.compile(f"^Swap pair {hits[1].id}")).click()
        page.get_by_text(f"Swapped chosen and rejected of pair {hits[1].id}", exact=False
                         ).first.wait_for()
        _settle(page)
        kept, swapped = edits.get_pair(db, hits[0].id), edits.get_pair(db, hits[1].id)
        assert "reviewed" in kept.tags and kept.chosen == target.chosen
        assert (swapped.chosen, swapped.rejected) == (hits[1].rejected, hits[1].chosen)
        db.close()
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        server.stop()


def _open_tab(page, name: str, shown: str) -> None:
    """Click a tab and wait until its content (the text `shown`) is on the page."""
    page.get_by_role("tab", name=name).click()
    page.get_by_text(shown, exact=False).locator("visible=true").first.wait_for()
    _settle(page)


@pytest.mark.e2e
def test_review_keys_change_no_pair_from_other_tabs_or_text_fields(tmp_path, page):
    home = tmp_path / "lab"
    server = StreamlitServer(home, env={"DPO_LAB_NO_PREPARE": "1"})
    try:
        page.goto(server.url)
        wait_for_app(page)
        page.locator("[data-testid='stSidebarNav'] a", has_text="Data").click()
        page.get_by_test_id("stDataFrame").first.wait_for()
        _settle(page)
        db = Store(get_workspace(home).db_path)
        edits_made = "SELECT COUNT(*) FROM edits"
        # each tab, then the next one: the tab switch's run comes after any run a key caused
        tabs = [("Browse", "Undo last edit"), ("Stats", "Length in tokens"),
                ("Checks", "Clear check filter"), ("Transform", "Create dataset")]
        for (name, shown), (_, next_shown) in zip(tabs, tabs[1:], strict=False):
            _open_tab(page, name, shown)
            for key in "ksfjKSFJ":
                page.keyboard.press(key)
            _open_tab(page, tabs[tabs.index((name, shown)) + 1][0], next_shown)
            assert db.scalar(edits_made) == 0, f"a key on the {name} tab changed a pair"

        _open_tab(page, "Review", "are reviewed")
        first = browse.page(db, "demo-childes", limit=1).pairs[0]
        search = page.get_by_role("textbox", name="Search prompt, chosen, rejected")
        search.click()
        for key in "ksfj":  # typed into a text field: text, not verdicts
            page.keyboard.press(key)
        assert search.input_value() == "ksfj"
        search.fill("")
        page.get_by_text(f"Pair {first.id}", exact=False).first.click()  # focus out of the box
        _settle(page)
        assert db.scalar(edits_made) == 0, "a key typed into the search box changed a pair"

        page.keyboard.press("s")  # on the Review tab, outside a text field: a named verdict
        page.get_by_text(f"Swapped chosen and rejected of pair {first.id}", exact=False
                         ).first.wait_for()
        swapped = edits.get_pair(db, first.id)
        assert (swapped.chosen, swapped.rejected) == (first.rejected, first.chosen)
        # the message is drawn before the Undo button: press U once the button says what it undoes
        undo = page.get_by_role("button", name=f"Undo on pair {first.id}")
        expect(undo).to_be_enabled(timeout=60_000)
        _settle(page)
        page.keyboard.press("u")
        page.get_by_text(f"Undid the verdict on pair {first.id}", exact=False).first.wait_for()
        back = edits.get_pair(db, first.id)
        assert (back.chosen, back.rejected, back.tags) == (first.chosen, first.rejected, [])
        db.close()
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        server.stop()


def _choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label`: type its start, take the first match."""
    box = page.get_by_test_id("stSelectbox").filter(
        has=page.get_by_text(label, exact=True)).first
    box.locator("input").click()
    box.locator("input").fill(option)
    page.get_by_role("option").first.wait_for()
    page.keyboard.press("Enter")


@pytest.mark.e2e
def test_after_a_dataset_switch_delete_removes_the_pair_shown(tmp_path, page):
    """The pair selector kept showing a pair of the previous dataset while Delete targeted
    another one: the pair deleted must be the one the selector shows, of the open dataset."""
    home = tmp_path / "lab"
    server = StreamlitServer(home, env={"DPO_LAB_NO_PREPARE": "1"})
    try:
        page.goto(server.url)
        wait_for_app(page)
        page.locator("[data-testid='stSidebarNav'] a", has_text="Data").click()
        page.get_by_test_id("stDataFrame").first.wait_for()
        _settle(page)
        db = Store(get_workspace(home).db_path)
        childes = browse.page(db, "demo-childes", limit=3).pairs
        _choose(page, "Pair", f"{childes[2].id}: ")
        page.get_by_text(f"History of pair {childes[2].id}", exact=False).first.wait_for()
        _settle(page)
        _choose(page, "Dataset", "demo-instruct")
        instruct = browse.page(db, "demo-instruct", limit=25).pairs
        ids = [p.id for p in instruct]
        page.get_by_text(f"showing ids {min(ids)}–{max(ids)}", exact=False).first.wait_for()
        _settle(page)
        shown = page.get_by_role("combobox", name="Pair").input_value()  # what the user sees
        page.get_by_role("button", name=re.compile("^Delete")).first.click()
        page.get_by_text("Deleted", exact=False).first.wait_for()
        _settle(page)
        gone = db.query("SELECT id, dataset_id FROM pairs WHERE deleted=1")
        assert len(gone) == 1, [dict(r) for r in gone]
        assert gone[0]["id"] in ids, "a pair of another dataset was deleted"
        assert str(gone[0]["id"]) in shown, (shown, gone[0]["id"])
        db.close()
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        raise
    finally:
        server.stop()
