"""Data: browse, search, edit, review, check, transform, import and export preference pairs.

Everything is paged by id (keyset), and the summary and check results are kept current edit by
edit by the library, so a rerun, and an edit, cost the same at 1k or 100k pairs. Only the open tab runs (its widgets, and so
the Review tab's one-key shortcuts, exist only while it is shown). Sections live in
pages/_data_*.py.
"""

import streamlit as st

from pages import _data_common as common
from pages import _data_panels as panels
from pages._data_browse import browse_tab
from pages._data_import import import_form, transcripts_form
from pages._data_review import review_tab
from pages._widgets import ensure_routed, errors_shown, store

ensure_routed()

st.title("Data")
db = store()
with errors_shown():
    dataset = common.dataset_picker(db)
    if dataset is None:
        st.info("No datasets yet: import one below.")
        import_form(db)
        st.stop()
    common.open_requested_pair(db, dataset)
    common.notice()
    mark = common.edit_mark(db, dataset.id)
    checks = common.check_results(db, dataset.id, dataset.created, mark)  # first: may take long
    summary = common.summary(db, dataset.id)
    st.caption(f"{summary['total']:,} pairs · {len(summary['splits'])} split(s) · "
               f"{common.lineage_text(db, dataset)} · last edit #{mark}")
    filters = common.filter_bar(summary, checks)
    tabs = st.tabs(common.TABS, key="data_tab", on_change="rerun")
    if tabs[0].open:
        with tabs[0]:
            browse_tab(db, dataset, filters, summary["total"], mark)
    if tabs[1].open:
        with tabs[1]:
            review_tab(db, dataset, filters, summary["total"], mark)
    if tabs[2].open:
        with tabs[2]:
            panels.checks_panel(checks, summary)
    if tabs[3].open:
        with tabs[3]:
            panels.stats_panel(common.summary(db, dataset.id, lengths=True), dataset, mark)
    if tabs[4].open:
        with tabs[4]:
            panels.transform_panel(db, dataset)
    if tabs[5].open:
        with tabs[5]:
            panels.export_panel(db, dataset)
            st.divider()
            import_form(db)
            transcripts_form(db)
