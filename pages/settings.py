"""Settings: cluster targets (Slurm) a run can be sent to, besides this machine (`local`)."""

import dataclasses

import pandas as pd
import streamlit as st

from dpo_core.cluster.targets import (
    SlurmTarget,
    dump_targets,
    list_targets,
    parse_targets,
    remove_target,
    save_target,
)
from dpo_core.fields import field_help
from pages._widgets import ensure_routed, errors_shown, store

ensure_routed()

st.title("Settings")
st.subheader("Cluster targets")
st.caption("A run trains on `local` (this machine) unless its `target` names one of these: "
           "it is then submitted with `sbatch` and followed through Slurm and its run folder. "
           "The run folder must be on a filesystem the cluster's nodes see (README: Running on "
           "a cluster).")

HELP = field_help(SlurmTarget)
LISTS = ("extra_sbatch", "shared_paths")
targets = list_targets(store())
if targets:
    st.dataframe(pd.DataFrame([t.to_dict() for t in targets]), hide_index=True)
else:
    st.info("No cluster targets yet: every run trains on this machine.")

names = ["(new target)", *(t.name for t in targets)]
picked = st.selectbox("Edit", names, key="settings_target")
current = next((t for t in targets if t.name == picked), None)
base = current.to_dict() if current else {f.name: f.default for f in
                                          dataclasses.fields(SlurmTarget)
                                          if f.default is not dataclasses.MISSING}


def widget(name: str, value):
    """One field's widget, its help from the dataclass."""
    key = f"target_{name}_{picked}"
    if name in LISTS:
        return st.text_area(name, "\n".join(value or []), key=key, help=HELP[name])
    if isinstance(value, bool):
        return st.checkbox(name, value, key=key, help=HELP[name])
    if isinstance(value, int):
        return st.number_input(name, value=value, step=1, key=key, help=HELP[name])
    return st.text_input(name, value or "", key=key, help=HELP[name])


with st.form("target_form"):
    values = {f.name: widget(f.name, base.get(f.name, [] if f.name in LISTS else ""))
              for f in dataclasses.fields(SlurmTarget)}
    saved = st.form_submit_button("Save target")
if saved:
    for name in LISTS:
        values[name] = [line.strip() for line in values[name].splitlines() if line.strip()]
    with errors_shown():
        save_target(store(), SlurmTarget(**values))
        st.success(f"Saved target `{values['name']}`.")
        st.rerun()

if current is not None and st.button(f"Remove `{current.name}`"):
    with errors_shown():
        remove_target(store(), current.name)
        st.rerun()

with st.expander("As YAML (the same as `python -m dpo_core targets export`)"):
    st.code(dump_targets(store()), language="yaml")
    text = st.text_area("Import targets from YAML", key="targets_yaml",
                        placeholder="targets:\n  - name: gpu\n    partition: gpu\n")
    if st.button("Import") and text.strip():
        with errors_shown():
            for target in parse_targets(text):
                save_target(store(), target)
            st.rerun()
