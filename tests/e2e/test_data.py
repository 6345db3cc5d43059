"""The Data page in a real browser: search, edit a cell and save, undo, review two pairs."""

import re

import pytest

from dpo_core.data import browse, edits
from dpo_core.store import Store
from dpo_core.workspace import get_workspace
from tests.support import StreamlitServer, assert_no_exception, wait_for_app


def _settle(page) -> None:
    page.wait_for_timeout(300)
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

        page.get_by_label("Search prompt, chosen, rejected").fill("pink")
        page.keyboard.press("Enter")
        _settle(page)
        hits = browse.page(db, "demo-childes", search="pink", limit=25).pairs
        assert hits, "the demo data has pairs about pink"
        total = db.scalar("SELECT COUNT(*) FROM pairs p JOIN datasets d ON d.id=p.dataset_id "
                          "WHERE d.name='demo-childes'")
        page.get_by_text(f"{len(hits)} matching pairs" if len(hits) < 25 else "matching pairs",
                         exact=False).first.wait_for()
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
        page.get_by_role("button", name=re.compile("^Keep")).click()
        _settle(page)
        page.get_by_text(f"Pair {hits[1].id}", exact=False).first.wait_for()
        page.get_by_role("button", name=re.compile("^Swap")).click()
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
