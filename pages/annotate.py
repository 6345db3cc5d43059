"""Annotate: team annotation. An annotator sees the guidelines and one pair at a time (sides A and
B, no labels, one-key shortcuts); an owner also creates tasks, sees agreement, adjudicates and
writes the consensus dataset; a viewer sees agreement only. With no account the lab is
single-user and its one person is the owner."""

import streamlit as st

from dpo_core.annotation.judgments import STRENGTHS, judge, next_item, progress
from dpo_core.annotation.tasks import list_tasks
from pages._accounts import sign_in_form, sign_out_button, signed_in_account
from pages._annotate_owner import agreement_section, people_section, tasks_section
from pages._widgets import ensure_routed, errors_shown, store

ensure_routed()

ANSWERS = [("A is better", "A", "a"), ("B is better", "B", "b"), ("Tie", "tie", "t"),
           ("Both bad", "both_bad", "x")]


def show_text(label: str, value) -> None:
    st.caption(label)
    if isinstance(value, list):
        for message in value:
            st.markdown(f"**{message.get('role', '')}**: {message.get('content', '')}")
    else:
        st.text(value)


def queue_section(actor) -> None:
    """The one-pair review queue of the task picked."""
    tasks = [t for t in list_tasks(store()) if t.status == "open"]
    if not tasks:
        st.info("No open annotation task." + (" Create one under Tasks." if actor.role == "owner"
                                               else " Ask an owner to create one."))
        return
    task = next(t for t in tasks if t.name == st.selectbox(
        "Task", [t.name for t in tasks], key="annotate_task"))
    if task.guidelines:
        with st.expander("Guidelines", expanded=True):
            st.markdown(task.guidelines)
    with errors_shown():
        item = next_item(store(), actor, task.name)
        mine = progress(store(), actor, task.name)
        st.progress(min(mine["mine"] / max(task.pairs, 1), 1.0),
                    text=f"{mine['mine']} judged by you · {mine['complete']}/{task.pairs} pairs "
                    f"have their {task.k} judgment(s)")
        if item is None:
            st.success("Nothing left for you in this task. Thank you!")
            st.button("Check again", key="annotate_check_again")  # pairs others let go of
            return
        show_text("Prompt", item.prompt)
        left, right = st.columns(2)
        with left:
            show_text("A", item.a)
        with right:
            show_text("B", item.b)
        extra = answer_details(task, item.pair_id)
        cols = st.columns(len(ANSWERS))
        for col, (label, choice, key) in zip(cols, ANSWERS, strict=True):
            if col.button(f"{label} ({key.upper()})", key=f"annotate_{choice}_{item.pair_id}",
                          shortcut=key, width="stretch"):
                judge(store(), actor, task.name, item.pair_id, choice, **extra)
                st.toast(f"Saved: {label.lower()} for pair {item.pair_id}.")
                st.rerun()


def answer_details(task, pair_id: int) -> dict:
    """The optional parts of an answer the task asks for."""
    extra = {}
    if task.ask_strength:
        extra["strength"] = st.radio("How clearly?", STRENGTHS, horizontal=True,
                                     key=f"annotate_strength_{pair_id}")
    if task.ask_reason:
        extra["reason"] = st.text_input("Why? (optional)", key=f"annotate_reason_{pair_id}")
    if task.allow_edit:
        edit = st.text_area("A better version of the better reply (optional)",
                            key=f"annotate_edit_{pair_id}")
        extra["edit"] = edit or None
    return extra


st.title("Annotate")
actor = signed_in_account()  # app.py signed it in; a session that just ended signs in again
if actor is None:
    sign_in_form()
else:
    sign_out_button(actor)
    sections = {"owner": ["Review queue", "Tasks", "Agreement", "People"],
                "annotator": ["Review queue"], "viewer": ["Agreement"]}[actor.role]
    section = sections[0] if len(sections) == 1 else st.radio(
        "Section", sections, horizontal=True, key="annotate_section")
    if section == "Review queue":
        queue_section(actor)
    elif section == "Tasks":
        tasks_section(actor)
    elif section == "People":
        people_section(actor)
    else:
        agreement_section(actor)
