"""DPO Lab: the Streamlit router. Pages live in pages/; the shared sidebar is drawn here."""

import streamlit as st

from dpo_core.access import set_resolver
from pages._accounts import acting_account, sign_in_form, signed_in_account, visible_pages
from pages._widgets import logged_in, login_form, pending_page, sidebar, use_router

use_router()  # every URL comes through this router and its login (pages/_widgets.py)
set_resolver(acting_account)  # owner-only library calls ask who this session is
st.set_page_config(page_title="DPO Lab", page_icon=":material/science:", layout="wide")

PAGES = [
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/data.py", "Data", ":material/table:"),
    ("pages/annotate.py", "Annotate", ":material/rate_review:"),
    ("pages/generate.py", "Generate", ":material/auto_awesome:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/runs.py", "Runs", ":material/monitoring:"),
    ("pages/evaluate.py", "Evaluate", ":material/fact_check:"),
    ("pages/chat.py", "Chat", ":material/forum:"),
    ("pages/sweeps.py", "Sweeps", ":material/tune:"),
    ("pages/settings.py", "Settings", ":material/settings:"),
]

allowed = logged_in()
account = signed_in_account() if allowed else None  # with accounts: who (pages/_accounts.py)
shown = visible_pages(PAGES, account)
# Before the login the navigation is hidden (and no page runs), but the URL keeps the page asked
# for, so the right password opens it.
nav = st.navigation([st.Page(path, title=title, icon=icon, default=(path == shown[0][0]))
                     for path, title, icon in shown],
                    position="sidebar" if account else "hidden")
if not allowed:
    login_form()
if account is None:
    sign_in_form()
if account.role == "owner":
    sidebar()
if target := pending_page():
    st.switch_page(target)  # asked for from inside a live fragment (pages/_widgets.go_to)
nav.run()
