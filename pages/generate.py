"""Generate: build preference pairs with a model (teacher, weak model, best-of-N with a judge).

Preview runs the first few prompts here; Start runs the whole build as a background job that
survives a closed browser. The progress panel only reads the store.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dpo_core.builders import job as builds
from dpo_core.builders.config import BUILDERS, CHILDES_SYSTEM_PROMPT, GenerateConfig
from dpo_core.chat.sampling import SamplingSettings
from dpo_core.data.datasets import list_datasets
from dpo_core.evaluation.judges import JUDGES
from dpo_core.fields import field_help
from dpo_core.jobs.lifecycle import cancel_job, job_status, list_jobs
from dpo_core.jobs.rows import ACTIVE
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC
from pages._widgets import ensure_routed, errors_shown, go_to, store

ensure_routed()

HELP = field_help(GenerateConfig)
SAMPLING_HELP = field_help(SamplingSettings)
BUILDER_LABELS = {"teacher": "Teacher writes chosen", "weak": "Weak model writes rejected",
                  "best-of-n": "Best-of-N with a judge"}

st.title("Generate pairs")
st.caption("Make a new dataset with a model. The recipe of how it was made is saved with it; "
           "a cancelled build keeps its pairs and the same settings resume it.")


def inputs_form() -> dict:
    """The builder, its prompts and settings, as a GenerateConfig dict."""
    builder = st.radio("Builder", BUILDERS, format_func=BUILDER_LABELS.get, horizontal=True,
                       help=HELP["builder"])
    cfg: dict = {"builder": builder}
    left, right = st.columns(2)
    with left:
        source = st.radio("Prompts from", ("dataset", "file"), horizontal=True)
        if source == "dataset":
            names = [d["name"] for d in list_datasets(store())]
            cfg["source_dataset"] = st.selectbox("Dataset", names, help=HELP["source_dataset"])
            cfg["source_split"] = st.selectbox("Split", ("", "train", "eval"),
                                               format_func=lambda s: s or "all")
        else:
            cfg["prompts_file"] = st.text_input("File path", help=HELP["prompts_file"])
        cfg["limit"] = int(st.number_input("Prompts (0 = all)", 0, value=20, help=HELP["limit"]))
        default_model = TINY_SPEC if builder == "weak" else DEFAULT_SPEC
        cfg["model"] = st.text_input("Model", default_model, help=HELP["model"])
        stem = cfg.get("source_dataset") or "prompts"
        cfg["output"] = st.text_input("New dataset name", f"{stem}-{builder}-{time.strftime('%m%d')}",
                                      help=HELP["output"])
    with right:
        builder_settings(builder, cfg)
    with st.expander("Sampling"):
        cfg["sampling"] = sampling_form()
        cfg["batch_size"] = int(st.number_input("Batch size", 1, 64, 8, help=HELP["batch_size"]))
        cfg["seed"] = int(st.number_input("Seed", 0, value=0, help=HELP["seed"]))
    return cfg


def builder_settings(builder: str, cfg: dict) -> None:
    if builder == "teacher":
        cfg["system_prompt"] = st.text_area("System prompt", CHILDES_SYSTEM_PROMPT,
                                            help=HELP["system_prompt"], height=140)
        cfg["teacher_writes"] = st.radio("Generated reply is", ("chosen", "rejected"),
                                         horizontal=True, help=HELP["teacher_writes"])
    if builder == "best-of-n":
        cfg["n"] = int(st.number_input("Candidates per prompt (N)", 2, 16, 4, help=HELP["n"]))
        cfg["judge"] = st.selectbox("Judge", JUDGES, help=HELP["judge"])
        if cfg["judge"] != "lexicon":
            cfg["judge_model"] = st.text_input("Judge model", help=HELP["judge_model"])
        cfg["min_margin"] = float(st.number_input("Minimum margin", 0.0, value=0.05, step=0.01,
                                                  help=HELP["min_margin"]))
    cfg["speaker_tag"] = st.text_input("Speaker tag", "auto", help=HELP["speaker_tag"])


def sampling_form() -> dict:
    d = SamplingSettings()
    cols = st.columns(5)
    return {
        "temperature": cols[0].number_input("temperature", 0.05, 2.0, d.temperature,
                                            help=SAMPLING_HELP["temperature"]),
        "top_p": cols[1].number_input("top_p", 0.05, 1.0, d.top_p, help=SAMPLING_HELP["top_p"]),
        "top_k": int(cols[2].number_input("top_k", 0, 500, d.top_k, help=SAMPLING_HELP["top_k"])),
        "max_new_tokens": int(cols[3].number_input("max_new_tokens", 1, 512, d.max_new_tokens,
                                                   help=SAMPLING_HELP["max_new_tokens"])),
        "repetition_penalty": cols[4].number_input("repetition_penalty", 0.5, 2.0,
                                                   d.repetition_penalty,
                                                   help=SAMPLING_HELP["repetition_penalty"]),
    }


def show_preview(result: dict) -> None:
    st.write(f"Speaker tag: `{result['speaker_tag'] or 'none'}` · dropped: {result['dropped']}")
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
             "margin": p["meta"].get("margin"), "flags": ", ".join(p["flags"])}
            for p in result["pairs"]]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


@st.fragment(run_every=2)
def progress_panel(job_id: str) -> None:
    """Done/total, kept/dropped and time left, read from the store; cancel; open the result."""
    job = job_status(store(), job_id)
    r, done, total = job["result"], job["step"], job["total_steps"]
    st.subheader(f"Job `{job['id']}` · {job['status']}")
    st.progress(done / total if total else 0.0, text=f"{done}/{total} prompts")
    cols = st.columns(4)
    cols[0].metric("Kept", r.get("kept", 0))
    cols[1].metric("Dropped", r.get("dropped", 0))
    cols[2].metric("Flagged", r.get("flagged", 0))
    cols[3].metric("Time left", time_left(job))
    if job["status"] in ACTIVE:
        if st.button("Cancel", key="cancel-job"):
            cancel_job(store(), job_id, wait=False)
    elif job["error_text"]:
        st.error(job["error_text"][-1500:])
    if job["status"] in ("cancelled", "failed", "lost") and not r.get("complete"):
        if st.button("Resume", key="resume-job", help="Continue after the last saved chunk."):
            with errors_shown():
                st.session_state["generate_job"] = builds.start_build(store(), job["config"])
                st.rerun()
    if job["status"] in ("completed", "cancelled") and r.get("dataset"):
        if st.button(f"Open {r['dataset']} in Data", type="primary", key="open-dataset"):
            go_to("pages/data.py", dataset=r["dataset"])


def time_left(job: dict) -> str:
    done = job["step"] - job["result"].get("resumed_at", 0)
    if job["status"] not in ACTIVE or not job["started"] or done <= 0:
        return "-"
    rate = done / max(time.time() - job["started"], 1e-6)
    return f"{(job['total_steps'] - job['step']) / rate:.0f} s"


with errors_shown():
    config = inputs_form()
    preview_col, start_col, _ = st.columns([1, 1, 4])
    if preview_col.button("Preview", help="Run the first 3 prompts here; nothing is saved."):
        with st.spinner("Generating the first prompts ..."):
            st.session_state["generate_preview"] = builds.preview(config, 3, store())
    if start_col.button("Start", type="primary"):
        st.session_state["generate_job"] = builds.start_build(store(), config)
    if "generate_preview" in st.session_state:
        show_preview(st.session_state["generate_preview"])

current = st.session_state.get("generate_job")
if current is None:  # after a restart: show the newest generate job
    latest = list_jobs(store(), kind="generate")
    current = latest[0]["id"] if latest else None
if current:
    progress_panel(current)
