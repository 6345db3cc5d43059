"""The journey in a real browser: three annotators in three browser contexts judge 10 pairs with
k=2 (progress shown, no labels; one of them with the keyboard shortcut), then the owner sees agreement and the disagreement queue,
adjudicates one pair and writes the consensus dataset."""

from __future__ import annotations

import pytest

from dpo_core.annotation.tasks import create_task
from dpo_core.data.datasets import get_dataset
from dpo_core.store import Store
from dpo_core.workspace import get_workspace
from tests.annotation.helpers import PASSWORD, pairs_dataset, team
from tests.support import StreamlitServer, wait_for_app

ANSWERS = {"ann": "A is better (A)", "bob": "Tie (T)", "cy": "Both bad (X)"}


def sign_in(chromium, url: str, name: str):
    page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    wait_for_app(page)
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {name}").wait_for()
    wait_for_app(page)
    return page


def judged(store: Store) -> int:
    return store.scalar("SELECT COUNT(*) FROM judgments")


@pytest.mark.e2e
def test_three_annotators_and_an_owner_in_the_browser(tmp_path, browser):
    home = tmp_path / "lab"
    store = Store(get_workspace(home).db_path)
    people = team(store, *ANSWERS)
    pairs_dataset(store, 10)
    create_task(store, people["boss"], "t", "prefs", k=2,
                guidelines="Prefer the **kind** reply.")
    server = StreamlitServer(home, env={"DPO_LAB_NO_PREPARE": "1"})
    try:
        pages = {name: sign_in(browser, f"{server.url}/annotate", name) for name in ANSWERS}
        for page in pages.values():
            body = page.locator("[data-testid='stApp']").inner_text()
            assert "Prefer the kind reply." in body and "chosen" not in body.lower()
            assert page.locator("[data-testid='stSidebarNav']").count() == 0  # Annotate only
        for _ in range(60):
            if judged(store) == 20:
                break
            for name, page in pages.items():
                answer = page.get_by_role("button", name=ANSWERS[name])
                if name == "ann" and answer.first.is_visible():
                    page.keyboard.press("a")  # ann judges with the one-key shortcut
                else:
                    # whichever of the two the page shows now: a rerun may swap one for the
                    # other between a look and a click, and a click on a button that is gone
                    # waits forever
                    answer.or_(page.get_by_role("button", name="Check again")).first.click()
                wait_for_app(page)
        assert judged(store) == 20
        assert store.scalar("SELECT COUNT(*) FROM judgments WHERE annotator='ann' AND "
                            "label IN ('chosen', 'rejected')") >= 3  # A, by key, as labels
        assert store.scalar("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM judgments "
                            "GROUP BY pair_id)") == 2
        assert "judged by you" in pages["ann"].locator("[data-testid='stApp']").inner_text()

        owner = sign_in(browser, f"{server.url}/annotate", "boss")
        nav = owner.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Runs" in nav and "Annotate" in nav  # an owner has every page
        owner.get_by_text("Agreement", exact=True).click()
        owner.get_by_text("Fleiss' kappa").wait_for()
        owner.get_by_text("Disagreements to adjudicate (10)").wait_for()
        owner.get_by_role("button", name="Decide").first.click()
        owner.get_by_text("Disagreements to adjudicate (9)").wait_for()
        owner.get_by_label("New dataset name (empty: DATASET-TASK)").fill("agreed")
        owner.get_by_role("button", name="Write the consensus dataset").click()
        owner.get_by_text("Wrote agreed: 1 pairs").wait_for()
        assert get_dataset(store, "agreed").recipe["task"] == "t"
    finally:
        server.stop()
        store.close()
