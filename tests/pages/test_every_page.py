"""Every page runs through app.py without an exception (Streamlit AppTest)."""

import pytest
from streamlit.testing.v1 import AppTest

from tests.support import REPO, open_page

PAGES = [line.split('"')[1] for line in (REPO / "app.py").read_text().splitlines()
         if line.strip().startswith('("pages/')]


@pytest.mark.parametrize("page_path", [p for p in PAGES if (REPO / p).is_file()])
def test_page_runs_without_exception(lab, page_path):
    open_page(page_path)


def test_home_shows_workspace_datasets_and_model_state(lab):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    assert at.title[0].value == "DPO Lab"
    subheaders = [s.value for s in at.subheader]
    assert "Default model" in subheaders and "Datasets" in subheaders
    texts = " ".join(str(e.value) for e in list(at.info) + list(at.success) + list(at.error))
    assert "builtin:smollm2-135m-instruct" in texts
