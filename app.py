"""DPO Lab: the Streamlit router. Pages live in pages/; the shared sidebar is drawn here."""

import streamlit as st

from pages._widgets import require_login, sidebar

st.set_page_config(page_title="DPO Lab", page_icon=":material/science:", layout="wide")

PAGES = [
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/data.py", "Data", ":material/table:"),
    ("pages/generate.py", "Generate", ":material/auto_awesome:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/runs.py", "Runs", ":material/monitoring:"),
    ("pages/evaluate.py", "Evaluate", ":material/fact_check:"),
    ("pages/chat.py", "Chat", ":material/forum:"),
    ("pages/sweeps.py", "Sweeps", ":material/tune:"),
]

require_login()
nav = st.navigation([st.Page(path, title=title, icon=icon, default=(title == "Home"))
                     for path, title, icon in PAGES])
sidebar()
nav.run()
