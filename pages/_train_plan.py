"""The execution plan: on the Train page, each setting the run will get, why, and TRL's default;
the train pairs longer than max_length with the choice to drop them or raise the limit; the
padding of a batch in random order and grouped by length. On the Runs page, the plan a run was
launched with."""

from __future__ import annotations

import streamlit as st

from dpo_core.training.config import RunConfig
from dpo_core.training.planner import Plan
from dpo_core.training.runs import plan_run, read_plan
from pages._widgets import ensure_routed, store, workspace

if __name__ == "__main__":  # Streamlit ran this helper module as a page: never render it
    ensure_routed()

EXECUTION_LABELS = {"lab": "lab (planned for this data and device)",
                    "trl-defaults": "TRL defaults (to compare)"}


def plan_panel(cfg: RunConfig, prefix: str) -> RunConfig:
    """Show the plan of `cfg`; returns the config as it would launch (the estimate uses it)."""
    try:
        plan = plan_run(store(), cfg, workspace())
    except Exception as exc:  # noqa: BLE001 - a plan preview must never block the form
        st.caption(f"No execution plan yet: {exc}")
        return cfg
    st.markdown(f"**Execution: {EXECUTION_LABELS[plan.execution]}** (change it under "
                "Execution; the optimisation settings stay the same either way)")
    plan_table(plan)
    if plan.padding:
        st.caption(f"Padding per batch over one epoch: {plan.padding['random']:.0%} in random "
                   f"order, {plan.padding['by_length']:.0%} grouped by length.")
    if plan.too_long:
        too_long_choice(plan, prefix)
    for text in plan.warnings:
        st.warning(text)
    return plan.apply(cfg)


def plan_table(plan: Plan) -> None:
    st.dataframe([{"setting": c.setting, "value": str(c.value), "reason": c.reason,
                   "TRL default": str(c.trl_default)} for c in plan.choices.values()],
                 hide_index=True, width="stretch")


def launched_plan(run: dict) -> None:
    """The Runs page: how the run was executed (the plan it was launched with) and why."""
    plan = read_plan(run)
    if plan is None:
        return
    dropped = (run.get("result") or {}).get("plan", {}).get("dropped")
    title = f"Execution: {plan.execution}" + (f" · {dropped} too-long pair(s) left out"
                                               if dropped else "")
    with st.expander(title, icon=":material/speed:"):
        plan_table(plan)
        for line in plan.explain()[len(plan.choices):]:
            st.caption(line)


def too_long_choice(plan, prefix: str) -> None:
    """The too-long count before launch, with the two ways out."""
    st.warning(plan.too_long_line())
    longest = plan.lengths.get("longest", 0)
    left, right = st.columns(2)
    left.button("Drop them", key=f"{prefix}:drop-long", disabled=plan.too_long_action == "drop",
                on_click=_set, args=({f"{prefix}:too_long": "drop"},),
                help="too_long: drop leaves them out of the run")
    right.button(f"Raise max_length to fit ({longest})", key=f"{prefix}:raise-limit",
                 on_click=_set, args=({f"{prefix}:max_length": "auto",
                                       f"{prefix}:length_percentile": "100.0"},),
                 help="max_length: auto takes the longest train pair (with length_percentile "
                      "100)")


def _set(values: dict) -> None:
    """Set form widgets (an on_click callback runs before the widgets exist again)."""
    st.session_state.update(values)
