"""Train: a run configuration form (from a recipe or a past run), checked as you type, with the
resource estimate; Launch queues the run and opens its live view on the Runs page."""

from __future__ import annotations

import copy
import typing

import streamlit as st
import yaml

from dpo_core.cluster.targets import target_names
from dpo_core.data.checks import check_counts, identical_warning
from dpo_core.data.datasets import list_datasets
from dpo_core.errors import ConfigError, DPOLabError
from dpo_core.fields import field_help
from dpo_core.jobs.slurm_jobs import request as slurm_request
from dpo_core.models import DEFAULT_SPEC, TINY_SPEC, prepared_folders
from dpo_core.recipes import recipe_names, recipe_path
from dpo_core.training import config as rc
from dpo_core.training.estimate import duration, estimate
from dpo_core.training.runs import finished_model_specs, list_runs, read_plan, start_run
from pages._train_plan import plan_panel
from pages._widgets import ensure_routed, errors_shown, store, workspace

ensure_routed()

GROUPS = {
    "Model": ["prompt_format"],
    "Data": ["train_split", "eval_split", "max_train_pairs", "max_eval_pairs",
             "max_prompt_length"],
    "Method": ["method", "lora.r", "lora.alpha", "lora.dropout", "lora.target_modules",
               "loss_type", "beta", "label_smoothing"],
    "Optimisation": ["learning_rate", "lr_scheduler_type", "warmup_steps", "warmup_ratio",
                     "per_device_train_batch_size", "per_device_eval_batch_size",
                     "gradient_accumulation_steps", "precision", "seed"],
    "Execution": ["execution", "max_length", "length_percentile", "too_long", "batch_order",
                  "gradient_checkpointing", "precompute_ref_log_probs", "attn_implementation",
                  "use_liger_kernel", "torch_compile"],
    "Schedule": ["max_steps", "num_train_epochs", "eval_steps", "save_steps", "save_total_limit",
                 "metric_for_best_model", "early_stopping_patience"],
    "Processes": ["target", "num_processes", "accelerate_config", "stall_multiple",
                  "first_progress_timeout_min"],
    "Logging": ["name", "logging_steps", "report_to", "sample_prompts", "sample_every",
                "sample_max_new_tokens"],
    "Testing hooks": ["debug.step_delay", "debug.oom_at_step"],
}
SCHEDULERS = ["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts",
              "polynomial", "inverse_sqrt"]
FOLDER, HUB = "A local folder ...", "A hub id ..."
HELP = field_help(rc.RunConfig)


def choices(name: str) -> list[str] | None:
    if name == "method":
        return list(rc.METHODS)
    if name == "precision":
        return list(rc.PRECISIONS)
    if name == "loss_type":
        return list(rc.accepted_loss_types())
    if name == "lr_scheduler_type":
        return SCHEDULERS
    if name == "metric_for_best_model":
        return ["", *rc.BEST_METRICS]
    if name == "target":  # this machine, or a cluster target from Settings
        return target_names(store())
    return EXECUTION_CHOICES.get(name)


EXECUTION_CHOICES = {"execution": list(rc.EXECUTIONS), "too_long": list(rc.TOO_LONG),
                     "batch_order": list(rc.BATCH_ORDERS),
                     "attn_implementation": list(rc.ATTENTION),
                     **{n: [rc.AUTO, True, False] for n in rc.AUTO_FIELDS[1:]}}


def hint(name: str):
    """The declared type of a (dotted) RunConfig field."""
    cls = rc.RunConfig
    *groups, last = name.split(".")
    for g in groups:
        cls = typing.get_type_hints(cls)[g]
    return typing.get_type_hints(cls)[last]


def get(data: dict, name: str):
    for part in name.split("."):
        data = data[part]
    return data


def put(data: dict, name: str, value) -> None:
    *groups, last = name.split(".")
    for g in groups:
        data = data.setdefault(g, {})
    data[last] = value


def widget(name: str, value, key: str):
    """One input per field, chosen from its type; floats are text so 5e-6 stays readable."""
    label, help_text, kind = name, HELP.get(name, ""), hint(name)
    options = choices(name)
    if options is not None:
        options = options if value in options else [value, *options]
        return st.selectbox(label, options, index=options.index(value), help=help_text, key=key)
    if kind is bool:
        return st.checkbox(label, value=bool(value), help=help_text, key=key)
    if kind is int:
        return st.number_input(label, value=int(value), step=1, help=help_text, key=key)
    if name == "report_to":
        return st.multiselect(label, list(rc.REPORTERS), default=value, help=help_text, key=key)
    if name == "prompt_format":
        text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True)
        return st.text_input(label, text.strip(), help=help_text, key=key)
    if name == "lora.target_modules":
        text = value if isinstance(value, str) else ", ".join(value)
        return st.text_input(label, text, help=help_text, key=key)
    return st.text_input(label, str(value), help=help_text, key=key)


def parse(name: str, raw):
    """Widget value -> config value; text for numbers is left to RunConfig's own coercion."""
    if name == "prompt_format":
        if raw.strip() in ("", "auto"):
            return "auto"
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"prompt_format is not valid YAML: {exc}",
                              "Write auto, or {kind: plain, template: '{prompt}'}.") from None
    if name == "lora.target_modules" and raw.strip() != "all-linear":
        return [t.strip() for t in raw.split(",") if t.strip()]
    return raw


# ---------------------------------------------------------------------------------------
# Where the form starts: defaults, a recipe, or a past run
# ---------------------------------------------------------------------------------------
def load_recipe(name: str) -> dict:
    """A recipe's RunConfig as a dict; a recipe that does not load is named with the fix."""
    try:
        return rc.RunConfig.load(recipe_path("train", name)).to_dict()
    except ConfigError as exc:
        st.error(f"Recipe **{name}** (recipes/train/{name}.yaml) is not a valid run config: "
                 f"{exc.message}\n\n**Fix:** {exc.fix or 'correct the recipe file.'} "
                 "Or pick another recipe.")
        st.stop()


def starting_point() -> tuple[str, dict]:
    runs = list_runs(store(), kinds=("train",))
    recipes = recipe_names("train")
    clone = st.session_state.pop("clone_run_id", None)
    if clone:
        st.session_state["train_source"] = "Clone a past run"
        st.session_state["train_clone"] = clone
    source = st.radio("Start from", ["A recipe", "Clone a past run", "Defaults"],
                      horizontal=True, key="train_source")
    if source == "A recipe" and recipes:
        default = "cpu-quick-demo" if "cpu-quick-demo" in recipes else recipes[0]
        name = st.selectbox("Recipe", recipes, index=recipes.index(default), key="train_recipe")
        return f"recipe:{name}", load_recipe(name)
    if source == "Clone a past run" and runs:
        ids = [r["id"] for r in runs]
        current = st.session_state.get("train_clone")
        run_id = st.selectbox("Run", ids, index=ids.index(current) if current in ids else 0,
                              format_func=lambda i: next(f"{r['name']} ({i}) · {r['status']}"
                                                         for r in runs if r["id"] == i))
        st.session_state["train_clone"] = run_id
        run = next(r for r in runs if r["id"] == run_id)
        plan = read_plan(run)  # the run's own 'auto' settings, planned again for the clone
        cfg = {**run["config"], **(plan.requested if plan else {})}
        return f"run:{run_id}", rc.RunConfig.from_dict(cfg).to_dict()
    if source != "Defaults":
        st.caption("Nothing to start from yet: using the defaults.")
    return "defaults", rc.RunConfig().to_dict()


def model_picker(value: str, prefix: str) -> str:
    local = prepared_folders(workspace())
    finished = finished_model_specs(store())
    options = [DEFAULT_SPEC, TINY_SPEC, *local, *finished, FOLDER, HUB]
    if value not in options:
        options.insert(0, value)
    pick = st.selectbox("model", options, index=options.index(value), help=HELP["model"],
                        key=f"{prefix}:model")
    if pick == FOLDER:
        return st.text_input("Model folder", placeholder="/path/to/hf-model",
                             key=f"{prefix}:model-folder")
    if pick == HUB:
        return st.text_input("Hub id", placeholder="HuggingFaceTB/SmolLM2-135M-Instruct",
                             key=f"{prefix}:model-hub")
    return pick


def dataset_picker(value: str, prefix: str) -> str:
    datasets = list_datasets(store())
    if not datasets:
        st.warning("No datasets yet: import pairs on the Data page first.")
        return value
    names = [d["name"] for d in datasets]
    labels = {d["name"]: f"{d['name']} (train {d['train']}, eval {d['eval']})" for d in datasets}
    if value not in names:
        names.insert(0, value)
    pick = st.selectbox("dataset", names, index=names.index(value), help=HELP["dataset"],
                        format_func=lambda n: labels.get(n, f"{n} (not in this workspace)"),
                        key=f"{prefix}:dataset")
    if pick in labels:
        checks_summary(next(d for d in datasets if d["name"] == pick))
    return pick


def checks_summary(ds: dict) -> None:
    """The dataset's failing checks (kept current edit by edit by the data layer: cheap)."""
    failing = {k: n for k, n in check_counts(store(), ds["id"]).items() if n}
    if failing:
        st.warning("Data checks: " + ", ".join(f"{n} {k.replace('_', ' ')}"
                                                for k, n in failing.items())
                   + " pairs. Review them on the Data page before training.")
        if warning := identical_warning(store(), ds["id"]):
            st.warning(warning)
    else:
        st.caption("Data checks: all passed.")


# ---------------------------------------------------------------------------------------
# The resource estimate
# ---------------------------------------------------------------------------------------
def estimate_panel(cfg: rc.RunConfig) -> None:
    """Memory by part (reference model included), time per step and for the whole run: rough
    at once, timed on this machine on request (kept for this exact config)."""
    key = f"measured:{cfg.to_yaml()}"
    try:
        est = st.session_state.get(key) or estimate(cfg, workspace())
    except Exception as exc:  # noqa: BLE001 - an estimate must never block the form
        st.caption(f"No resource estimate for this model: {exc}")
        return
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Memory", f"{est.total_gb:.2f} GB", help=f"of {est.device_gb:.1f} GB on this device")
    c2.metric("Time per step", f"~{est.seconds_per_step:.2f} s",
              delta="measured" if est.measured else "rough", delta_color="off",
              help="Forward and backward passes of chosen and rejected, the reference's forward "
                   "pass and the optimizer update." + ("" if est.measured else
                                                      " Rough: from FLOPs; Measure times it."))
    run = est.run_seconds
    c3.metric("Whole run", f"~{duration(run['total'])}" if run else "–",
              help=(f"{duration(run['low'])} to {duration(run['high'])}: "
                    + ", ".join(f"{k} {duration(v)}" for k, v in run["parts"].items() if v))
              if run else None)
    c4.metric("Trained parameters", f"{est.trained_params / 1e6:.2f}M",
              help=f"of {est.total_params / 1e6:.1f}M")
    st.caption("Memory by part (GB): " + " · ".join(f"{k} {v:.2f}" for k, v in
                                                     est.memory_gb.items())
               + (f"; {REFERENCE_NOTE[cfg.method if cfg.method == 'full' else 'lora']}"
                  if cfg.precompute_ref_log_probs is not True else "; reference log-probs are "
                  "precomputed before training, so no reference copy is kept."))
    if not est.measured and st.button("Measure on this machine", icon=":material/timer:",
                                      help="Loads the model and times a few real steps with "
                                           "this config's shapes (median of 3)."):
        with errors_shown(), st.spinner("Timing a few real steps ..."):
            st.session_state[key] = estimate(cfg, workspace(), measure=True)
            st.rerun()
    for text in est.warnings:
        st.warning(f"**Will probably not fit:** {text}" if not est.fits else text)
    if cfg.target != "local":  # the request it will make of Slurm, and the partition's limits
        with errors_shown():
            asked = slurm_request(store(), cfg.target, (est.run_seconds or {}).get("total"),
                                  est.total_gb, cfg.num_processes)
            (st.warning if asked["problems"] else st.info)(asked["text"])


REFERENCE_NOTE = {
    "full": "a full fine-tune keeps a second copy of the model as its reference (precompute "
            "its log-probs to drop it)",
    "lora": "the reference costs no extra memory (the base with the adapters switched off)",
}


# ---------------------------------------------------------------------------------------
st.title("Train")
prefix, base = starting_point()
values, spots = copy.deepcopy(base), {}
st.subheader("Model and data")
left, right = st.columns(2)
with left:
    values["model"] = model_picker(base["model"], prefix)
with right:
    values["dataset"] = dataset_picker(base["dataset"], prefix)
for group, names in GROUPS.items():
    with st.expander(group, expanded=group in ("Method", "Schedule")):
        cols = st.columns(2)
        shown = [n for n in names if not (n.startswith("lora.") and values["method"] == "full")]
        for i, name in enumerate(shown):
            with cols[i % 2]:
                raw = widget(name, get(base, name), key=f"{prefix}:{name}")
                spots[name] = st.empty()
                try:
                    put(values, name, parse(name, raw))
                except ConfigError as exc:
                    spots[name].error(str(exc))
                    values["_bad"] = name
                if name == "method":
                    values["method"] = raw

problem, cfg = None, None
if "_bad" not in values:
    try:
        cfg = rc.RunConfig.from_dict(values)
        rc.validate(cfg, store=store(), workspace=workspace())
    except DPOLabError as exc:
        problem = exc
if problem is not None:
    target = spots.get(problem.field) or st
    target.error(f"{problem.message}\n\n**Fix:** {problem.fix}" if problem.fix else problem.message)

st.subheader("Resources")
if cfg is not None and problem is None:
    estimate_panel(plan_panel(cfg, prefix))
    with st.expander("Config as YAML (for `python -m dpo_core train`)"):
        st.code(cfg.to_yaml(), language="yaml")
if st.button("Launch", type="primary", disabled=cfg is None or problem is not None,
             icon=":material/rocket_launch:"):
    with errors_shown(), st.spinner("Freezing the run folder and queueing ..."):
        run_id = start_run(store(), cfg, workspace())
        st.session_state["run_id"] = run_id
        st.switch_page("pages/runs.py")
