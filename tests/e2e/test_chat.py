"""The Chat page in a real browser: a finished tiny run and its base answer side by side, a vote,
and the new pair in the Data page with the right prompt, chosen and rejected."""

import re
import shutil

import pytest

from dpo_core.publish.sample_run import make_sample_run
from dpo_core.store import Store
from dpo_core.workspace import get_workspace
from tests.support import StreamlitServer, assert_no_exception, wait_for_app


def _settle(page) -> None:
    page.wait_for_timeout(300)
    wait_for_app(page)
    assert_no_exception(page)


def _letters(text: str) -> str:
    """Letters and digits only: markdown rendering may drop `~`, `*`, `_` from model output."""
    return re.sub(r"[^A-Za-z0-9]", "", text)


@pytest.mark.e2e
def test_chat_side_by_side_vote_and_find_the_pair(tmp_path, page, tiny_model_dir):
    home = tmp_path / "lab"
    ws = get_workspace(home)
    shutil.copytree(tiny_model_dir, ws.models / "tiny")
    db = Store(ws.db_path)
    make_sample_run(ws, db)
    # a slowed-down tiny model, so the browser can watch both answers grow at the same time
    server = StreamlitServer(home, env={"DPO_LAB_NO_PREPARE": "1",
                                        "DPO_LAB_DEBUG_TOKEN_DELAY_S": "0.25"})
    try:
        page.goto(server.url)
        wait_for_app(page)
        page.locator("[data-testid='stSidebarNav'] a", has_text="Chat").click()
        page.get_by_role("heading", name="Chat").first.wait_for()
        page.get_by_test_id("stChatInput").wait_for()
        _settle(page)

        page.get_by_test_id("stChatInputTextArea").fill("what is that ?")
        page.keyboard.press("Enter")
        page.wait_for_function(
            """() => {
                const boxes = [...document.querySelectorAll("[data-testid='stChatMessageContent']")];
                return boxes.filter(b => b.innerText.includes("▌")
                                       && b.innerText.replace("▌", "").trim()).length === 2;
            }""", timeout=60_000)  # both sides show words while both are still streaming (the cursor)
        page.get_by_text("Which answer is better?").wait_for(timeout=120_000)
        _settle(page)
        assert page.get_by_text("Left · builtin:tiny").count() == 1
        assert page.get_by_text("Right · run:run-tiny-demo").count() == 1
        answers = page.locator("[data-testid='stChatMessageContent']")
        assert answers.count() == 3  # the message and both answers
        assert page.get_by_text("tokens/s").count() == 2
        shown_left, shown_right = answers.nth(1).inner_text(), answers.nth(2).inner_text()

        page.get_by_text("Right better").click()
        _settle(page)
        page.get_by_role("button", name="Save vote").click()
        page.get_by_text("Saved pair", exact=False).wait_for()
        _settle(page)
        pair = db.query_one("SELECT p.id, p.prompt, p.chosen, p.rejected FROM pairs p JOIN "
                            "datasets d ON d.id=p.dataset_id WHERE d.name='chat-votes'")
        assert pair["prompt"] == "what is that ?"
        assert _letters(pair["chosen"]) == _letters(shown_right)
        assert _letters(pair["rejected"]) == _letters(shown_left)
        assert pair["chosen"] != pair["rejected"]

        page.get_by_role("button", name="See it in the Data page").click()
        page.get_by_role("heading", name="Data").first.wait_for()
        _settle(page)
        page.get_by_text("1 matching pairs", exact=False).first.wait_for()
        page.get_by_role("tab", name="Review").click()
        _settle(page)
        page.get_by_text(f"Pair {pair['id']}", exact=True).first.wait_for()
        page.get_by_text("what is that ?").first.wait_for()
        for label, text in (("Chosen", pair["chosen"]), ("Rejected", pair["rejected"])):
            block = page.locator("[data-testid='stMarkdownContainer']").filter(
                has=page.locator("strong", has_text=re.compile(f"^{label}$"))).last
            assert _letters(block.inner_text()) == label + _letters(text)
    finally:
        server.stop()
