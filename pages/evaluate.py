"""Evaluate: baseline vs fine-tuned runs on held-out pairs, minimal-pair suites, pairs or
multiple-choice files, and win rate judged by a lexicon, a reward model or an LLM.

Start runs a background job (it survives a closed browser); results are stored evals, so every
past evaluation stays comparable. The form and progress live in pages/_eval_views.py, the
results in pages/_eval_results.py.
"""

import streamlit as st

from dpo_core.evaluation.results import list_evals
from dpo_core.jobs.lifecycle import list_jobs
from pages import _eval_results as shown
from pages import _eval_views as views
from pages._widgets import ensure_routed, errors_shown, store

ensure_routed()

st.title("Evaluate")
st.caption("Did it get better, on what, and what broke? Accuracy with a 95% interval and n, "
           "baseline vs tuned tested pair by pair, a suite's files, flips between two "
           "evaluations, and generation win rate.")
db = store()

with errors_shown():
    job = views.start_form(db)
    if job:
        st.session_state["eval_job"] = job

current = st.session_state.get("eval_job")
if current is None:  # after a restart: the newest evaluation job
    latest = list_jobs(db, kind="eval")
    current = latest[0]["id"] if latest else None
if current:
    views.progress_panel(db, current)

evals = list_evals(db)
st.subheader("Results")
if not evals:
    st.info("No evaluations yet: choose models and a dataset above and press Start.")
    st.stop()
with errors_shown():
    selected = shown.choose_evals(db, evals, current)
    shown.comparison(db, evals, selected)
    st.subheader("Baseline vs tuned, pair by pair")
    shown.paired(db, evals, selected)
    shown.suite_files(db, evals, selected)
    st.subheader("Flip analysis")
    shown.flips(db, evals, selected)
    st.subheader("Win-rate examples")
    shown.examples(db, evals)
