"""Data: browse, search, edit, review, check, transform, import and export preference pairs.

Everything is paged by id (keyset), so a rerun costs the same at 1k or 100k pairs; stats and check
results are cached per dataset and its latest edit. Sections live in pages/_data_views.py.
"""

import streamlit as st

from pages import _data_views as views
from pages._widgets import errors_shown, store

st.title("Data")
db = store()
with errors_shown():
    dataset = views.dataset_picker(db)
    if dataset is None:
        st.info("No datasets yet: import one below.")
        views.import_form(db)
        st.stop()
    mark = views.edit_mark(db, dataset.id)
    summary = views.summary(db.path, dataset.id, dataset.created, mark)
    checks = views.check_results(db.path, dataset.id, dataset.created, mark)
    st.caption(f"{summary['total']:,} pairs · {len(summary['splits'])} split(s) · "
               f"last edit #{mark}")
    filters = views.filter_bar(summary, checks)
    tabs = st.tabs(["Browse", "Review", "Checks", "Stats", "Transform", "Import / Export"])
    with tabs[0]:
        views.browse(db, dataset, filters, summary["total"], mark)
    with tabs[1]:
        views.review(db, dataset, filters, summary["total"], mark)
    with tabs[2]:
        views.checks_panel(checks)
    with tabs[3]:
        views.stats_panel(summary)
    with tabs[4]:
        views.transform_panel(db, dataset)
    with tabs[5]:
        views.export_panel(db, dataset)
        st.divider()
        views.import_form(db)
