"""Data: browse, search, edit, review, check, transform, import and export preference pairs.

Everything is paged by id (keyset), so a rerun costs the same at 1k or 100k pairs; stats and check
results are cached per dataset and its latest edit. Sections live in pages/_data_*.py.
"""

import streamlit as st

from pages import _data_common as common
from pages import _data_panels as panels
from pages._data_browse import browse_tab
from pages._data_review import review_tab
from pages._widgets import errors_shown, store

st.title("Data")
db = store()
with errors_shown():
    dataset = common.dataset_picker(db)
    if dataset is None:
        st.info("No datasets yet: import one below.")
        panels.import_form(db)
        st.stop()
    mark = common.edit_mark(db, dataset.id)
    summary = common.summary(db.path, dataset.id, dataset.created, mark)
    checks = common.check_results(db.path, dataset.id, dataset.created, mark)
    st.caption(f"{summary['total']:,} pairs · {len(summary['splits'])} split(s) · "
               f"last edit #{mark}")
    filters = common.filter_bar(summary, checks)
    tabs = st.tabs(["Browse", "Review", "Checks", "Stats", "Transform", "Import / Export"])
    with tabs[0]:
        browse_tab(db, dataset, filters, summary["total"], mark)
    with tabs[1]:
        review_tab(db, dataset, filters, summary["total"], mark)
    with tabs[2]:
        panels.checks_panel(checks)
    with tabs[3]:
        panels.stats_panel(summary)
    with tabs[4]:
        panels.transform_panel(db, dataset)
    with tabs[5]:
        panels.export_panel(db, dataset)
        st.divider()
        panels.import_form(db)
