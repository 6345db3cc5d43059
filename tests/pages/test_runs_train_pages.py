"""The Runs and Train pages through app.py (Streamlit AppTest): notes on crafted metric
histories, failure advice, incremental reads, import, delete, leaderboard, and the Train form's
validation messages."""

import json

from dpo_core.recipes import recipe_names
from dpo_core.store import dumps, now, open_store
from dpo_core.training.metrics import write_metrics
from tests.support import open_page


def add_run(ws, run_id, status="completed", history=None, **cols):
    """A runs row (no worker) plus its metrics: history = {key: [(step, value), ...]}."""
    store = open_store(ws.db_path)
    row = {"id": run_id, "name": cols.pop("name", run_id), "kind": "train", "status": status,
           "config_json": dumps(cols.pop("config", {"model": "builtin:tiny", "dataset": "d"})),
           "created": now(), "started": now() - 60, "finished": now(), "step": 20,
           "total_steps": 20, **cols}
    with store.write() as conn:
        conn.execute(f"INSERT INTO runs({','.join(row)}) VALUES({','.join('?' * len(row))})",
                     tuple(row.values()))
    for key, points in (history or {}).items():
        for step, value in points:
            write_metrics(store, run_id, step, {key: value})
    return store


def runs_page(run_id=None):
    return open_page("pages/runs.py", **({"run_id": run_id} if run_id else {}))


def shown(at) -> str:
    return "\n".join(str(e.value) for e in [*at.error, *at.warning, *at.info, *at.success])


STEPS = range(1, 21)


def test_runs_page_without_runs_points_to_train(lab):
    at = runs_page()
    assert "No runs yet" in shown(at)


def test_falling_rewards_and_nan_are_explained(lab):
    add_run(lab, "r-bad", history={
        "loss": [(s, 0.69 - 0.01 * s) for s in STEPS],
        "rewards/chosen": [(s, -0.05 * s) for s in STEPS],
        "rewards/rejected": [(s, -0.1 * s) for s in STEPS],
        "grad_norm": [(s, float("nan") if s == 7 else 1.0) for s in STEPS]})
    text = shown(runs_page("r-bad"))
    assert "Both rewards are falling" in text and "moving away from both answers" in text
    assert "NaN or infinite values" in text and "`grad_norm` (first at step 7)" in text


def test_healthy_run_shows_no_notes(lab):
    add_run(lab, "r-good", history={
        "loss": [(s, 0.69 - 0.01 * s) for s in STEPS],
        "rewards/chosen": [(s, 0.01 * s) for s in STEPS],
        "rewards/rejected": [(s, -0.03 * s) for s in STEPS],
        "rewards/accuracies": [(s, 0.5 + 0.01 * s) for s in STEPS]})
    at = runs_page("r-good")
    assert not at.warning and not at.error
    assert at.subheader[0].value.endswith("r-good · completed")


def test_pinned_accuracy_exploding_margins_and_zero_loss(lab):
    add_run(lab, "r-easy", history={
        "loss": [(s, 0.001) for s in STEPS],
        "rewards/accuracies": [(s, 1.0) for s in STEPS],
        "rewards/margins": [(s, 0.1 * 1.5 ** s) for s in STEPS]})
    text = shown(runs_page("r-easy"))
    for title in ("Accuracy pinned at 1.0", "Margins are exploding", "train loss is close to 0"):
        assert title in text


def test_failed_run_shows_error_kind_and_what_to_try(lab, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "worker.log").write_text("loading ...\nRuntimeError: CUDA out of memory\n")
    add_run(lab, "r-oom", status="failed", error_kind="oom", run_dir=str(run_dir),
            error_text="SimulatedOOM: CUDA out of memory (simulated at step 3)\n\ntail")
    at = runs_page("r-oom")
    text = shown(at)
    assert "(oom): SimulatedOOM: CUDA out of memory" in text
    assert "What to try" in text and "gradient_checkpointing" in text
    assert any("CUDA out of memory" in c.value for c in at.code)  # the log tail


def test_live_view_reads_only_new_metric_rows(lab, monkeypatch):
    from dpo_core.training import metrics

    store = add_run(lab, "r-live", status="completed", history={"loss": [(1, 0.7), (2, 0.6)]})
    seen = []
    original = metrics.read_metrics

    def spy(store, run_id, after_id=0):
        rows = original(store, run_id, after_id)
        seen.append((after_id, len(rows)))
        return rows

    monkeypatch.setattr(metrics, "read_metrics", spy)
    at = runs_page("r-live")
    assert seen[0] == (0, 2)
    write_metrics(store, "r-live", 3, {"loss": 0.5})
    seen.clear()
    at.run()
    last_id = store.scalar("SELECT MAX(id) FROM metrics WHERE run_id='r-live'")
    assert seen and all(after > 0 for after, _ in seen) and (last_id - 1, 1) in seen
    live = at.session_state["metrics:r-live"]["live"]
    assert dict(live.history()["loss"]) == {1: 0.7, 2: 0.6, 3: 0.5}


def test_import_log_form_adds_a_read_only_run(lab, tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("step,loss,rewards/chosen,rewards/rejected\n1,0.7,0.1,-0.1\n2,0.6,0.2,-0.2\n")
    at = runs_page()
    form_inputs = [t for t in at.text_input if t.label in ("... or a path on this machine",
                                                           "Run name")]
    form_inputs[0].set_value(str(path))
    form_inputs[1].set_value("old-run")
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value.endswith("old-run · completed")
    assert "Imported log (read-only)" in " ".join(c.value for c in at.caption)
    buttons = {b.label: b for b in at.button}
    assert buttons["Resume"].disabled and buttons["Clone"].disabled


def test_delete_asks_first_then_removes_rows_and_folder(lab, tmp_path):
    run_dir = tmp_path / "run-del"
    run_dir.mkdir()
    store = add_run(lab, "r-del", run_dir=str(run_dir), history={"loss": [(1, 0.7)]})
    at = runs_page("r-del")
    next(b for b in at.button if b.label == "Delete").click().run()
    assert "cannot be undone" in shown(at)
    assert store.scalar("SELECT COUNT(*) FROM runs") == 1
    next(b for b in at.button if b.label == "Yes, delete").click().run()
    assert store.scalar("SELECT COUNT(*) FROM runs") == 0
    assert store.scalar("SELECT COUNT(*) FROM metrics") == 0 and not run_dir.exists()


def test_leaderboard_tab_orders_finished_runs(lab):
    for run_id, acc, loss in (("r-a", 0.7, 0.5), ("r-b", 0.9, 0.6), ("r-c", 0.7, 0.4)):
        add_run(lab, run_id, history={"eval_rewards/accuracies": [(10, acc)],
                                      "eval_loss": [(10, loss)]}, config={"beta": 0.1})
    at = runs_page()
    board = next(d for d in at.dataframe if "runtime" in d.value.columns)
    assert list(board.value["name"]) == ["r-b", "r-c", "r-a"]
    assert list(board.value["beta"]) == [0.1, 0.1, 0.1]


def test_overfitting_is_named_with_the_step_it_started(lab):
    add_run(lab, "r-over", history={
        "loss": [(s, 0.69 - 0.03 * s) for s in STEPS],
        "eval_loss": [(5, 0.85), (10, 1.6), (15, 3.2), (20, 4.9)],
        "eval_rewards/margins": [(5, 0.4), (10, 0.1), (15, -0.8), (20, -2.5)]})
    text = shown(runs_page("r-over"))
    assert "Overfitting: eval loss rises while train loss falls (from step 5)" in text
    assert "Eval margins are negative (from step 15)" in text


def test_samples_stand_next_to_the_baseline_s_answer(lab):
    from dpo_core.training.metrics import write_sample

    store = add_run(lab, "r-samples")
    for step, answer in ((0, "I don't know."), (10, "it is a ball ."), (20, "a big ball !")):
        write_sample(store, "r-samples", step, "user: what is that ?", answer)
    at = runs_page("r-samples")
    assert at.selectbox(key="sample_step:r-samples").options == ["20", "10"]
    texts = [t.value for t in at.text]
    assert texts[-3:] == ["user: what is that ?", "I don't know.", "a big ball !"]
    at.selectbox(key="sample_step:r-samples").set_value(10).run()
    assert [t.value for t in at.text][-1] == "it is a ball ."


def test_compare_keeps_the_picks_and_metric_when_a_new_run_appears(lab):
    history = {"loss": [(1, 0.7), (2, 0.6)], "rewards/margins": [(1, 0.1), (2, 0.3)]}
    for run_id in ("r-one", "r-two"):
        add_run(lab, run_id, history=history)
    at = runs_page()
    compare = next(m for m in at.multiselect if m.label == "Runs")
    compare.set_value(["r-one", "r-two"]).run()
    next(s for s in at.selectbox if s.label == "Metric").set_value("rewards/margins").run()
    add_run(lab, "r-three", history=history)
    at.run()
    assert next(m for m in at.multiselect if m.label == "Runs").value == ["r-one", "r-two"]
    assert next(s for s in at.selectbox if s.label == "Metric").value == "rewards/margins"


# ---------------------------------------------------------------------------------------
# Train page
# ---------------------------------------------------------------------------------------
def train_page():
    return open_page("pages/train.py")


def field(at, label):
    return next(w for w in [*at.text_input, *at.number_input] if w.label == label)


def test_train_form_shows_validation_next_to_the_field(lab):
    at = train_page()
    assert not at.error
    assert not next(b for b in at.button if b.label == "Launch").disabled
    field(at, "beta").set_value("-1").run()
    assert [e.value for e in at.error] == ["beta is -1.0.\n\n**Fix:** Use a positive value, "
                                           "e.g. 0.1."]
    assert next(b for b in at.button if b.label == "Launch").disabled
    field(at, "beta").set_value("abc").run()
    assert "beta is 'abc', which is not a number." in at.error[0].value
    field(at, "beta").set_value("0.1").run()
    field(at, "per_device_train_batch_size").set_value(0).run()
    assert at.error[0].value.startswith("per_device_train_batch_size is 0.")


def test_train_form_fields_carry_the_runconfig_help(lab):
    from dpo_core.fields import field_help
    from dpo_core.training.config import RunConfig

    at = train_page()
    assert field(at, "beta").help == field_help(RunConfig)["beta"]
    assert "Data checks" in shown(at) or any("Data checks" in c.value for c in at.caption)


def test_recipe_dropdown_lists_only_training_recipes(lab):
    at = train_page()
    options = at.selectbox(key="train_recipe").options
    assert {"smoke-tiny", "cpu-quick-demo", "qlora"} <= set(options)
    assert options == recipe_names("train"), options  # pair builds and sweeps have their own


def test_a_recipe_that_does_not_load_is_named_with_the_fix(lab, monkeypatch):
    from dpo_core.errors import ConfigError
    from dpo_core.training.config import RunConfig

    real = RunConfig.load.__func__

    def load(cls, path):
        if "qlora" in str(path):
            raise ConfigError("Unknown config field 'batch_size'.", "Use one of: beta, ...")
        return real(cls, path)

    monkeypatch.setattr(RunConfig, "load", classmethod(load))
    at = train_page()
    at.selectbox(key="train_recipe").set_value("qlora").run()
    assert not at.exception, [e.value for e in at.exception]
    [error] = [e.value for e in at.error]
    assert "Recipe **qlora**" in error and "batch_size" in error and "**Fix:**" in error
    assert not any(b.label == "Launch" for b in at.button)
    at.selectbox(key="train_recipe").set_value("smoke-tiny").run()
    assert not at.exception and not at.error


def test_clone_from_runs_page_prefills_the_form(lab):
    cfg = {"model": "builtin:tiny", "dataset": "demo-instruct", "beta": 0.25, "max_steps": 7,
           "name": "old"}
    add_run(lab, "r-clone", config=cfg)
    at = runs_page("r-clone")
    next(b for b in at.button if b.label == "Clone").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert field(at, "beta").value == "0.25"
    assert field(at, "max_steps").value == 7
    assert json.loads(json.dumps(at.session_state["train_clone"])) == "r-clone"


def test_estimate_warns_with_the_fix_when_the_run_will_not_fit(lab):
    at = train_page()
    assert any(m.label == "Memory" for m in at.metric)
    next(s for s in at.selectbox if s.label == "method").set_value("full").run()
    field(at, "max_length").set_value("32768").run()
    field(at, "max_prompt_length").set_value(128).run()
    field(at, "per_device_train_batch_size").set_value(256).run()
    next(s for s in at.selectbox if s.label == "gradient_checkpointing").set_value(False).run()
    text = shown(at)
    assert "Will probably not fit" in text and "gradient_checkpointing" in text


def test_launch_queues_the_run_and_opens_its_view(workspace_with_tiny, monkeypatch):
    from dpo_core.training.runs import cancel_run, get_run

    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    at = train_page()
    next(s for s in at.selectbox if s.label == "Recipe").set_value("smoke-tiny").run()
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run_id = at.session_state["run_id"]
    store = open_store(workspace_with_tiny.db_path)
    try:
        assert get_run(store, run_id)["status"] in ("queued", "running", "completed")
        assert at.title[0].value == "Runs"
        assert " smoke-tiny · " in at.subheader[0].value
    finally:
        if get_run(store, run_id)["status"] in ("queued", "running"):
            cancel_run(store, run_id)


def test_silent_worker_shows_a_stall_warning_while_still_running(lab):
    """A live worker (here: this test's own process) that stopped beating 5 minutes ago."""
    import os
    import socket

    from dpo_core.jobs.processes import process_start_time

    pid = os.getpid()
    add_run(lab, "r-stalled", status="running", pid=pid, pgid=pid,
            proc_start=process_start_time(pid), host=socket.gethostname(),
            heartbeat=now() - 300, finished=None, step=7,
            history={"loss": [(s, 0.69) for s in range(1, 8)]})
    at = runs_page("r-stalled")
    assert at.subheader[0].value.endswith("r-stalled · running")  # alive, so not 'lost'
    text = shown(at)
    assert "No heartbeat from the job's process for" in text and "Cancel it" in text


def test_every_run_setting_is_on_the_train_form(lab):
    import dataclasses
    import typing

    from dpo_core.training.config import RunConfig

    names, hints = set(), typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        kind = hints[f.name] if dataclasses.is_dataclass(hints[f.name]) else None
        names |= {f"{f.name}.{g.name}" for g in dataclasses.fields(kind)} if kind else {f.name}
    at = train_page()
    next(s for s in at.selectbox if s.label == "method").set_value("lora").run()
    labels = {w.label for w in [*at.text_input, *at.number_input, *at.selectbox,
                                *at.checkbox, *at.multiselect]}
    assert names - {"model", "dataset"} <= labels, sorted(names - labels)
    field(at, "num_processes").set_value(2).run()
    field(at, "accelerate_config").set_value("/no/such/accelerate.yaml").run()
    assert "accelerate_config is '/no/such/accelerate.yaml'" in shown(at)
    field(at, "accelerate_config").set_value("").run()
    next(s for s in at.selectbox if s.label == "metric_for_best_model").set_value(
        "eval_loss").run()
    yaml_text = at.code[0].value
    assert "num_processes: 2" in yaml_text and "metric_for_best_model: eval_loss" in yaml_text
    field(at, "eval_steps").set_value(0).run()  # the best checkpoint is chosen at evaluations
    assert "eval_steps is 0" in shown(at)


def test_measure_times_real_steps_and_keeps_the_result_for_that_config(lab):
    at = train_page()
    next(s for s in at.selectbox if s.label == "Recipe").set_value("smoke-tiny").run()
    step = next(m for m in at.metric if m.label == "Time per step")
    assert step.delta == "rough" and any(m.label == "Whole run" for m in at.metric)
    next(b for b in at.button if b.label == "Measure on this machine").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert next(m for m in at.metric if m.label == "Time per step").delta == "measured"
    assert not any(b.label == "Measure on this machine" for b in at.button)
    field(at, "beta").set_value("0.3").run()  # another config: rough again until measured
    assert next(m for m in at.metric if m.label == "Time per step").delta == "rough"


def test_train_page_shows_the_plan_too_long_pairs_and_the_execution_control(lab):
    at = train_page()
    next(s for s in at.selectbox if s.label == "Recipe").set_value("smoke-tiny").run()
    table = at.dataframe[0].value
    assert list(table.columns) == ["setting", "value", "reason", "TRL default"]
    rows = dict(zip(table["setting"], table["value"], strict=True))
    assert rows["max_length"] == "128" and rows["gradient_checkpointing"] == "False"
    assert any("grouped by length" in c.value for c in at.caption)  # the padding, measured
    field(at, "max_prompt_length").set_value(16).run()
    field(at, "max_length").set_value("48").run()
    assert "train pair(s) are longer than max_length 48: left out" in shown(at)
    next(b for b in at.button if b.label.startswith("Raise max_length")).click().run()
    assert field(at, "max_length").value == "auto"
    assert "longer than max_length" not in shown(at)
    next(s for s in at.selectbox if s.label == "execution").set_value("trl-defaults").run()
    table = at.dataframe[0].value
    rows = dict(zip(table["setting"], table["value"], strict=True))
    assert (rows["max_length"], rows["gradient_checkpointing"], rows["batch_order"]) == \
        ("1024", "True", "random")


def test_a_run_shows_the_execution_plan_it_was_launched_with(lab):
    from dpo_core.training.planner import Choice, Plan

    plan = Plan("lab", choices={"max_length": Choice(
        "max_length", 48, "the longest train pair is 41 tokens", "planned", 1024)},
        too_long=2, lengths={"longest": 70})
    add_run(lab, "r-plan", result_json=json.dumps({"plan": {**plan.to_dict(), "dropped": 2}}))
    at = runs_page("r-plan")
    assert "Execution: lab · 2 too-long pair(s) left out" in [e.label for e in at.expander]
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert table.to_dict("records") == [{"setting": "max_length", "value": "48",
                                         "reason": "the longest train pair is 41 tokens",
                                         "TRL default": "1024"}]
    assert any("2 train pair(s) are longer than max_length 48" in c.value for c in at.caption)
