"""The Generate page in a real browser: a small best-of-N build runs as a job, and its result
opens in the Data page."""

import shutil

import pytest

from dpo_core.data.datasets import count_pairs, get_dataset
from dpo_core.jobs.lifecycle import cancel_job
from dpo_core.store import Store
from dpo_core.workspace import get_workspace
from tests.support import StreamlitServer, assert_no_exception, wait_for_app

OUTPUT = "from-browser"


def _settle(page) -> None:
    page.wait_for_timeout(300)
    wait_for_app(page)
    assert_no_exception(page)


def _fill(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    _settle(page)


def _choose(page, select_label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=select_label).first.locator("input").click()
    page.get_by_role("option", name=option, exact=True).click()
    _settle(page)


def _stop_jobs(db_path) -> None:
    """Jobs outlive the app by design: stop any the test left running."""
    db = Store(db_path)
    for row in db.query("SELECT id FROM runs WHERE status IN ('queued', 'running')"):
        cancel_job(db, row["id"], timeout=10)
    db.close()


@pytest.mark.e2e
def test_small_best_of_n_build_from_the_page_opens_in_data(tmp_path, tiny_model_dir, page):
    home = tmp_path / "lab"
    shutil.copytree(tiny_model_dir, home / "models" / "tiny")
    server = StreamlitServer(home, env={"DPO_LAB_NO_PREPARE": "1"})
    try:
        page.goto(server.url)
        wait_for_app(page)
        page.locator("[data-testid='stSidebarNav'] a", has_text="Generate").click()
        page.get_by_role("heading", name="Generate pairs").first.wait_for()
        _settle(page)

        page.get_by_text("Best-of-N with a judge", exact=True).click()
        _settle(page)
        _choose(page, "Dataset", "demo-instruct")
        _fill(page, "Prompts (0 = all)", 3)
        _fill(page, "Model", "builtin:tiny")
        _fill(page, "Candidates per prompt (N)", 2)
        _fill(page, "Minimum margin", 0)
        page.get_by_text("Sampling", exact=True).click()
        _settle(page)
        _fill(page, "max_new_tokens", 6)
        _fill(page, "New dataset name", OUTPUT)  # last: its default follows builder and dataset

        page.get_by_role("button", name="Start").click()
        _settle(page)
        page.get_by_text("· completed").first.wait_for(timeout=300_000)  # the panel polls
        _settle(page)
        db = Store(get_workspace(home).db_path)
        job = db.query_one("SELECT status, step, total_steps FROM runs WHERE kind='generate'")
        assert (job["status"], job["step"], job["total_steps"]) == ("completed", 3, 3)
        page.get_by_text("3/3 prompts").first.wait_for()

        page.get_by_role("button", name=f"Open {OUTPUT} in Data").click()
        page.get_by_role("heading", name="Data", exact=True).first.wait_for(timeout=180_000)
        _settle(page)
        picker = page.get_by_test_id("stSelectbox").filter(has_text="Dataset").first
        picker.wait_for(timeout=180_000)  # the Data page's first run syncs the new dataset's checks
        assert OUTPUT in picker.inner_text() + picker.locator("input").input_value()
        ds = get_dataset(db, OUTPUT)
        assert ds.recipe["builder"] == "best-of-n" and ds.recipe["progress"]["complete"]
        assert ds.recipe["model"] == "builtin:tiny" and ds.recipe["source"] == "demo-instruct"
        if count_pairs(db, ds.id):  # its pairs are listed
            page.get_by_test_id("stDataFrame").first.wait_for()
        db.close()
    finally:
        _stop_jobs(get_workspace(home).db_path)
        server.stop()
