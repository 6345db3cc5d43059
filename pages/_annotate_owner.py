"""The Annotate page's owner and viewer sections: people (accounts and roles), tasks (create,
progress), agreement with its plot, the disagreement queue to adjudicate, and the consensus
dataset. Every call is checked for the role in the library too."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dpo_core.annotation.accounts import ROLES, add_account, disable_account, list_accounts
from dpo_core.annotation.agreement import adjudicate, disagreements, task_agreement
from dpo_core.annotation.consensus import consensus_dataset
from dpo_core.annotation.judgments import LABELS, progress
from dpo_core.annotation.tasks import MAX_K, create_task, list_tasks
from dpo_core.data.checks import CHECKS
from dpo_core.data.datasets import dataset_names
from pages._widgets import ensure_routed, errors_shown, store


def people_section(actor) -> None:
    """The lab's accounts, and the forms that add and disable them (owners only)."""
    if said := st.session_state.pop("annotate_people_said", None):
        st.success(said)
    people = list_accounts(store())
    if people:
        st.dataframe(pd.DataFrame([{"name": a.name, "role": a.role,
                                    "signs in with": "OIDC provider" if a.oidc else "password",
                                    "disabled": a.disabled} for a in people]), hide_index=True)
    else:
        st.info("No accounts: this is a single-user lab and you are its owner. The first account "
                "you add must be an owner; from then on everyone signs in.")
    with st.form("annotate_new_account", clear_on_submit=True):
        st.subheader("Add an account")
        cols = st.columns(3)
        name = cols[0].text_input("Name (an e-mail address for the OIDC login)")
        role = cols[1].selectbox("Role", ROLES, index=0 if not people else 1)
        password = cols[2].text_input("Password (8+ characters)", type="password")
        oidc = st.checkbox("Signs in with the lab's OIDC provider (secrets.toml [auth]); no "
                           "password")
        added = st.form_submit_button("Add account")
    if added:
        with errors_shown():
            made = add_account(store(), actor, name, None if oidc else password, role, oidc=oidc)
            st.session_state["annotate_people_said"] = f"Added {made.name} ({made.role})."
            st.rerun()  # the table and the lists above show the new account
    live = [a.name for a in people if not a.disabled and a.name != actor.name]
    if live:
        cols = st.columns([3, 1])
        who = cols[0].selectbox("Disable an account (its sessions end now)", live,
                                key="annotate_disable_who")
        if cols[1].button("Disable", key="annotate_disable"):
            with errors_shown():
                disable_account(store(), actor, who)
                st.rerun()


def tasks_section(actor) -> None:
    """The tasks with their progress, and the form that creates one."""
    tasks = list_tasks(store())
    if tasks:
        rows = []
        for t in tasks:
            done = progress(store(), actor, t.id)
            rows.append({"task": t.name, "dataset": t.dataset_name, "pairs": t.pairs, "k": t.k,
                         "complete": done["complete"], "judgments": done.get("judgments"),
                         "status": t.status if t.status == "open" else t.status_reason})
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    with st.form("annotate_new_task"):
        st.subheader("New task")
        name = st.text_input("Name", key="annotate_new_name")
        dataset = st.selectbox("Dataset", dataset_names(store()), key="annotate_new_dataset")
        check = st.selectbox("Only the pairs failing", ["(all pairs)", *CHECKS],
                             key="annotate_new_check")
        k = st.number_input("Annotators per pair (k)", 1, MAX_K, 2, key="annotate_new_k")
        guidelines = st.text_area("Guidelines (markdown, shown above every pair)",
                                  key="annotate_new_guidelines")
        strength = st.checkbox("Ask how clearly (clearly / slightly)", key="annotate_new_strength")
        reason = st.checkbox("Ask for a reason", key="annotate_new_reason")
        edit = st.checkbox("Allow an edit of the better reply", key="annotate_new_edit")
        made = st.form_submit_button("Create task")
    if made:
        with errors_shown():
            t = create_task(store(), actor, name, dataset, k=int(k), guidelines=guidelines,
                            check=None if check == "(all pairs)" else check,
                            ask_strength=strength, ask_reason=reason, allow_edit=edit)
            st.success(f"Created {t.name}: {t.pairs} pairs, {t.k} judgment(s) each.")


def agreement_section(actor) -> None:
    """Agreement figures and plot; for owners the disagreement queue and the consensus."""
    tasks = list_tasks(store())
    if not tasks:
        st.info("No annotation task yet.")
        return
    name = st.selectbox("Task", [t.name for t in tasks], key="annotate_agreement_task")
    with errors_shown():
        got = task_agreement(store(), actor, name)
        cols = st.columns(4)
        cols[0].metric("Pairs judged by 2+", got["pairs_shared"])
        cols[1].metric("Raw agreement", _figure(got["raw"]))
        cols[2].metric("Fleiss' kappa", _figure(got["fleiss_kappa"]))
        cols[3].metric("Krippendorff's alpha", _figure(got["krippendorff_alpha"]))
        if got["pairwise"]:
            pairwise = pd.DataFrame([{"annotators": " / ".join(p["annotators"]), "n": p["n"],
                                      "raw agreement": p["raw"],
                                      "Cohen's kappa": p["cohen_kappa"]}
                                     for p in got["pairwise"]])
            st.dataframe(pairwise, hide_index=True)
        if got["annotators"]:
            people = pd.DataFrame(got["annotators"]).set_index("annotator")
            st.caption("Agreement with the majority, per annotator")
            st.bar_chart(people["with_majority"].fillna(0))
        if actor.role == "owner":
            disagreement_queue(actor, name)
            consensus_form(actor, name)


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def disagreement_queue(actor, task: str) -> None:
    queue = disagreements(store(), actor, task)
    st.subheader(f"Disagreements to adjudicate ({len(queue)})")
    for item in queue[:5]:
        with st.container(border=True):
            st.caption(f"Pair {item['pair_id']} · majority: {item['majority'] or 'none'}")
            st.text(f"Prompt: {item['prompt']}\nChosen: {item['chosen']}\n"
                    f"Rejected: {item['rejected']}")
            st.write(", ".join(f"{j['annotator']}: {j['label']}" + (f" ({j['reason']})"
                                                                    if j["reason"] else "")
                               for j in item["judgments"]))
            decision = st.selectbox("Decision", LABELS, key=f"annotate_decide_{item['pair_id']}")
            if st.button("Decide", key=f"annotate_decide_go_{item['pair_id']}"):
                adjudicate(store(), actor, task, item["pair_id"], decision)
                st.rerun()


def consensus_form(actor, task: str) -> None:
    with st.form("annotate_consensus"):
        st.subheader("Consensus dataset")
        into = st.text_input("New dataset name (empty: DATASET-TASK)", key="annotate_into")
        ties = st.radio("Ties", ["drop", "keep"], horizontal=True, key="annotate_ties")
        both_bad = st.radio("Both bad", ["drop", "keep"], horizontal=True,
                            key="annotate_both_bad")
        made = st.form_submit_button("Write the consensus dataset")
    if made:
        with errors_shown():
            ds = consensus_dataset(store(), actor, task, into=into or None, ties=ties,
                                   both_bad=both_bad)
            st.success(f"Wrote {ds.name}: {ds.recipe['kept']} pairs. Train on it from the "
                       "Train page.")


if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()
