"""The Evaluate page through app.py (AppTest) and the evaluation job: baseline vs a finished tiny
run, the comparison table, chart, flips and win-rate examples; implicit-reward accuracy equals
the eval_rewards/accuracies TRL logged during training on the same pairs."""

from __future__ import annotations

import pytest

from dpo_core.data.datasets import get_dataset
from dpo_core.errors import ConfigError
from dpo_core.evaluation.evaluate import run_evaluation
from dpo_core.evaluation.job import start_evaluation
from dpo_core.evaluation.results import (
    flip_analysis,
    job_evals,
    list_evals,
    paired_comparison,
)
from dpo_core.jobs.lifecycle import wait_job
from dpo_core.publish.sample_run import RUN_ID, make_sample_run
from tests.support import add_pairs, make_reward_model, open_page


@pytest.fixture
def evaluated_lab(workspace_with_tiny, store, monkeypatch):
    """A workspace with builtin:tiny, a pair dataset and a finished tiny LoRA run."""
    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    add_pairs(store)
    make_sample_run(workspace_with_tiny, store)
    return store


def _evaluate_now(store, models, dataset=None, split="eval", methods=("mean-logp",), **options):
    """Start an evaluation job and wait for it."""
    return wait_job(store, start_evaluation(store, models, dataset, split, methods, **options))


def evaluate_page():
    return open_page("pages/evaluate.py")


def test_page_without_evaluations_offers_the_run(evaluated_lab):
    at = evaluate_page()
    assert at.multiselect(key="eval_runs").value == [f"run:{RUN_ID}"]
    assert "No evaluations yet" in at.info[0].value


def test_page_evaluates_baseline_vs_run_and_shows_table_chart_flips(evaluated_lab):
    at = evaluate_page()
    at.multiselect(key="eval_methods").set_value(["mean-logp", "implicit-reward"])
    at.checkbox(key="eval_win").check()
    at.number_input(key="eval_win_prompts").set_value(3)
    at.number_input(key="eval_win_tokens").set_value(6)
    at.button(key="eval_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job_id = at.session_state["eval_job"]
    job = wait_job(evaluated_lab, job_id)
    assert job["status"] == "completed", job["error_text"]
    assert job["result"]["skipped"] == ["implicit-reward for builtin:tiny (not a run)"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]

    evals = list_evals(evaluated_lab)
    assert {e["method"] for e in evals} == {"mean-logp", "implicit-reward", "win-rate:lexicon"}
    assert all(e["id"] in job_evals(evaluated_lab, job_id) for e in evals)
    table = at.dataframe[0].value
    assert set(table.index) == {"builtin:tiny", f"run:{RUN_ID}"}
    cell = table.loc["builtin:tiny", "tiny-pairs/eval · mean-logp (reply-tokens)"]
    assert "%" in cell and "[" in cell and "n=16" in cell  # accuracy, interval, n
    # the baseline has no implicit-reward eval: a dash and a note, never "None"
    assert table.loc["builtin:tiny", "tiny-pairs/eval · implicit-reward (implicit-reward)"] == "–"
    assert any("implicit-reward is skipped for a baseline" in c.value for c in at.caption)
    chart = at.get("plotly_chart")[0].proto.spec
    assert '"error_y"' in chart and "builtin:tiny" in chart
    assert "win-rate" not in chart and "win-rate" not in " ".join(table.columns)
    [win] = [e for e in evals if e["method"] == "win-rate:lexicon"]
    rates = at.dataframe[1].value  # win rates apart from accuracies: wins/ties/losses
    assert list(rates[["wins", "ties", "losses", "n"]].iloc[0]) == [
        win["wins"], win["ties"], win["losses"], 3]
    assert rates["win rate"].iloc[0] == f"{(win['wins'] + win['ties'] / 2) / 3:.1%}"
    assert any("(wins + ties / 2) / n" in c.value for c in at.caption)

    pair_evals = [e["id"] for e in evals if e["method"] == "mean-logp"]
    test = paired_comparison(evaluated_lab, min(pair_evals), max(pair_evals))
    [paired] = at.dataframe[2].value.to_dict("records")  # baseline vs tuned, pair by pair
    assert paired["benchmark"] == "tiny-pairs/eval · mean-logp (reply-tokens)"
    assert paired["n"] == 16 and (paired["fixed"], paired["broken"]) == (test["only_b"],
                                                                         test["only_a"])
    assert paired["tuned − baseline"] == (f"{test['difference']:+.1%} [{test['ci_low']:+.1%}, "
                                          f"{test['ci_high']:+.1%}]")
    assert paired["baseline"].startswith("builtin:tiny: ") and "[" in paired["tuned"]
    flips = flip_analysis(evaluated_lab, min(pair_evals), max(pair_evals))
    assert at.selectbox(key="flip_a").value == min(pair_evals)  # same method, baseline first
    assert at.selectbox(key="flip_b").value == max(pair_evals)
    assert not at.warning  # same method on baseline and tuned: nothing to warn about
    assert any("fixed" in c.value and "broken" in c.value for c in at.caption)
    shown = at.dataframe[3].value
    assert len(shown) == len(flips["fixed"])
    examples = at.dataframe[4].value
    assert list(examples.columns) == ["prompt", "baseline answer", "tuned answer", "verdict"]
    assert len(examples) == 3


def test_a_finished_second_job_becomes_the_compared_selection(evaluated_lab):
    at = evaluate_page()
    at.multiselect(key="eval_methods").set_value(["mean-logp"])
    at.button(key="eval_start").click().run()
    first = at.session_state["eval_job"]
    assert wait_job(evaluated_lab, first)["status"] == "completed"
    at.run()
    assert at.multiselect(key="eval_compare").value == job_evals(evaluated_lab, first)
    at.multiselect(key="eval_methods").set_value([])
    at.checkbox(key="eval_win").check()
    at.number_input(key="eval_win_prompts").set_value(2)
    at.number_input(key="eval_win_tokens").set_value(4)
    at.button(key="eval_start").click().run()
    second = at.session_state["eval_job"]
    assert second != first and wait_job(evaluated_lab, second)["status"] == "completed"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="eval_compare").value == job_evals(evaluated_lab, second)
    at.multiselect(key="eval_compare").set_value(job_evals(evaluated_lab, first)).run()
    assert at.multiselect(key="eval_compare").value == job_evals(evaluated_lab, first)  # kept


def test_dataset_defaults_to_the_chosen_runs_training_data(evaluated_lab):
    add_pairs(evaluated_lab, "other-pairs", n=6)  # listed after tiny-pairs, the form's first option
    with evaluated_lab.write() as conn:
        conn.execute("UPDATE runs SET config_json=json_set(config_json, '$.dataset', "
                     "'other-pairs', '$.eval_split', 'train') WHERE id=?", (RUN_ID,))
    at = evaluate_page()
    assert at.selectbox(key="eval_dataset").value == "other-pairs"
    assert at.selectbox(key="eval_split").value == "train"
    at.selectbox(key="eval_dataset").set_value("tiny-pairs").run()
    at.multiselect(key="eval_runs").set_value([]).run()
    at.multiselect(key="eval_runs").set_value([f"run:{RUN_ID}"]).run()
    assert at.selectbox(key="eval_dataset").value == "tiny-pairs"  # the user's pick stays


def test_flip_list_filters_and_opens_the_data_page(evaluated_lab):
    base = _evaluate_now(evaluated_lab, ["builtin:tiny"], "tiny-pairs", "eval", ["mean-logp"])
    tuned = _evaluate_now(evaluated_lab, [f"run:{RUN_ID}"], "tiny-pairs", "eval", ["mean-logp"])
    [a], [b] = job_evals(evaluated_lab, base["id"]), job_evals(evaluated_lab, tuned["id"])
    flips = flip_analysis(evaluated_lab, a, b)
    which = "fixed" if flips["fixed"] else "broken"
    assert flips[which], "the perturbed run must flip at least one pair"
    at = evaluate_page()
    at.selectbox(key="flip_a").set_value(a)
    at.selectbox(key="flip_b").set_value(b)
    at.radio(key="flip_which").set_value(which).run()
    assert len(at.dataframe[1].value) == len(flips[which])
    at.text_input(key="flip_filter").input("no such text").run()
    assert at.dataframe[1].value.empty
    at.text_input(key="flip_filter").input("").run()
    pair_id = at.selectbox(key="flip_pair").value
    at.button(key="flip_edit").click().run()
    assert at.session_state["dataset"] == "tiny-pairs"
    # the Data page takes `pair_id` (and opens that pair, picked in its selector)
    ds_id = get_dataset(evaluated_lab, "tiny-pairs").id
    state = at.session_state
    opened = state[f"data_row_{ds_id}"] if f"data_row_{ds_id}" in state else state["pair_id"]
    assert opened == pair_id


def test_start_evaluation_names_what_is_missing(evaluated_lab):
    with pytest.raises(ConfigError, match="No model"):
        start_evaluation(evaluated_lab, [], "tiny-pairs")
    with pytest.raises(ConfigError, match="win rate"):
        start_evaluation(evaluated_lab, ["builtin:tiny"], "tiny-pairs", win_rate={"prompts": 2})
    with pytest.raises(ConfigError, match="Unknown method"):
        start_evaluation(evaluated_lab, ["builtin:tiny"], "tiny-pairs", methods=["logp"])


def test_suite_folder_evaluates_per_file_in_a_job(evaluated_lab, tmp_path):
    folder = tmp_path / "blimp"
    folder.mkdir()
    (folder / "agreement.txt").write_text("the dog runs .\nthe dog run .\n" * 3)
    (folder / "island.txt").write_text("what did you see ?\nwhat did you see it ?\n" * 2)
    job = _evaluate_now(evaluated_lab, ["builtin:tiny"], methods=[], suite=str(folder))
    assert job["status"] == "completed", job["error_text"]
    [summary] = list_evals(evaluated_lab)
    assert summary["method"] == "suite:sum-logp" and set(summary["files"]) == {"agreement",
                                                                               "island"}
    assert summary["protocol"] == "whole-sentence"


# ---------------------------------------------------------------------------------------------
# implicit-reward vs the eval_rewards/accuracies training logged on the same pairs
# ---------------------------------------------------------------------------------------------
def test_implicit_reward_accuracy_matches_training_eval(workspace_with_tiny, store):
    from dpo_core.training.config import LoraSettings, RunConfig
    from dpo_core.training.metrics import read_metrics
    from dpo_core.training.runs import start_run, wait_run

    add_pairs(store, "toy", n=30)  # 20 eval pairs, all of them evaluated by TRL at the end
    cfg = RunConfig(model="builtin:tiny", dataset="toy", max_steps=4, logging_steps=1,
                    eval_steps=4, save_steps=4, per_device_train_batch_size=2,
                    learning_rate=5e-3, max_length=64, max_prompt_length=32, sample_prompts=0,
                    lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    run_id = start_run(store, cfg, workspace_with_tiny)
    run = wait_run(store, run_id, poll=0.5)
    assert run["status"] == "completed", run.get("error_text")
    logged = {m["key"]: m["value"] for m in read_metrics(store, run_id)
              if m["split"] == "eval" and m["step"] == 4}
    [summary] = run_evaluation(store, f"run:{run_id}", "toy", "eval", ["implicit-reward"])
    assert summary["n"] == 20 and summary["beta"] == cfg.beta
    # Equal because every pair fits max_length/max_prompt_length (TRL would truncate longer ones)
    # and both sides append EOS to the replies and score the reply tokens only.
    assert logged["eval_rewards/margins"] != 0.0  # the adapter moved: not a trivial 0 == 0
    assert summary["accuracy"] == pytest.approx(logged["eval_rewards/accuracies"])
    margins = [r["chosen_score"] - r["rejected_score"] for r in store.query(
        "SELECT * FROM eval_results WHERE eval_id=?", (summary["eval_id"],))]
    assert sum(margins) / len(margins) == pytest.approx(logged["eval_rewards/margins"], abs=1e-3)


def test_cli_eval_detach_starts_a_job_tagging_its_evals(evaluated_lab, capsys):
    from dpo_core.cli.main import main

    assert main(["eval", "--model", "builtin:tiny", "--dataset", "tiny-pairs", "--detach"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert wait_job(evaluated_lab, job_id)["status"] == "completed"
    [summary] = list_evals(evaluated_lab)
    assert job_evals(evaluated_lab, job_id) == [summary["id"]] and summary["n"] == 16


# ---------------------------------------------------------------------------------------------
# The win-rate judge picker and the multiple-choice / pairs file method
# ---------------------------------------------------------------------------------------------
HELLASWAG = [{"prompt": 'Context: "the dog"\n0: "runs to the ball ."\n1: "is a truck ."\n'
                        'Best Continuation:', "chosen": " 0", "rejected": " 1"},
             {"prompt": 'Context: "what is that ? it"\n0: "is red juice ."\n1: "is a ball ."\n'
                        '2: "okay ."\nBest Continuation:', "chosen": " 1", "rejected": " 2"},
             {"prompt": 'Context: "look at"\n0: "the big truck ."\n1: "please juice ."\n'
                        'Best Continuation:', "chosen": " 0", "rejected": " 1"}]


def test_judge_picker_defaults_to_the_offline_lexicon(evaluated_lab):
    at = evaluate_page()
    assert at.selectbox(key="eval_judge").value == "lexicon"
    assert not any(t.key == "eval_judge_model" for t in at.text_input)
    at.selectbox(key="eval_judge").set_value("llm").run()
    assert at.text_input(key="eval_judge_model").value == ""
    assert "{a}" in at.text_area(key="eval_judge_prompt").value


def test_page_win_rate_with_a_reward_model_judge(evaluated_lab, tmp_path, tiny_model_dir):

    folder = make_reward_model(tmp_path / "rm", tiny_model_dir)
    at = evaluate_page()
    at.multiselect(key="eval_methods").set_value([])
    at.checkbox(key="eval_win").check()
    at.number_input(key="eval_win_prompts").set_value(2)
    at.number_input(key="eval_win_tokens").set_value(4)
    at.selectbox(key="eval_judge").set_value("reward-model").run()
    at.button(key="eval_start").click().run()
    assert "needs a model spec" in at.error[0].value  # no judge model yet: named, no job
    at.text_input(key="eval_judge_model").input(str(folder))
    at.button(key="eval_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = wait_job(evaluated_lab, at.session_state["eval_job"])
    assert job["status"] == "completed", job["error_text"]
    [summary] = list_evals(evaluated_lab)
    assert summary["method"] == "win-rate:reward-model" and summary["n"] == 2
    at.run()
    assert len(at.dataframe[-1].value) == 2  # the examples table of the stored verdicts


def test_page_llm_judge_passes_its_prompt_to_the_job(evaluated_lab):
    at = evaluate_page()
    at.multiselect(key="eval_methods").set_value([])
    at.checkbox(key="eval_win").check()
    at.number_input(key="eval_win_prompts").set_value(2)
    at.number_input(key="eval_win_tokens").set_value(4)
    at.selectbox(key="eval_judge").set_value("llm").run()
    at.text_input(key="eval_judge_model").input("builtin:tiny")
    at.text_area(key="eval_judge_prompt").input("{prompt}\nA: {a}\nB: {b}\nBetter:")
    at.button(key="eval_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = wait_job(evaluated_lab, at.session_state["eval_job"])
    assert job["status"] == "completed", job["error_text"]
    assert job["config"]["win_rate"]["judge_template"].endswith("Better:")
    [summary] = list_evals(evaluated_lab)
    assert summary["method"] == "win-rate:llm"


def test_page_scores_a_pairs_file_as_pairs_and_as_choices(evaluated_lab, tmp_path):
    import json

    path = tmp_path / "hellaswag.json"
    path.write_text(json.dumps(HELLASWAG))
    at = evaluate_page()
    at.multiselect(key="eval_methods").set_value([])
    at.text_input(key="eval_file").input(str(path))
    at.multiselect(key="eval_file_as").set_value(["pairs", "choices"])
    at.button(key="eval_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = wait_job(evaluated_lab, at.session_state["eval_job"])
    assert job["status"] == "completed", job["error_text"]
    evals = list_evals(evaluated_lab)  # baseline and the run, each scored both ways
    assert sorted((e["model"], e["method"]) for e in evals) == sorted(
        (m, k) for m in ("builtin:tiny", f"run:{RUN_ID}")
        for k in ("pairs:mean-logp", "choices:mean-logp"))
    assert all(e["n"] == 3 and e["suite"] == str(path) for e in evals)
    assert sorted(job_evals(evaluated_lab, job["id"])) == sorted(e["id"] for e in evals)
    at.run()
    table = at.dataframe[0].value
    assert {"hellaswag.json · pairs:mean-logp (reply-tokens)",
            "hellaswag.json · choices:mean-logp (choice-tokens)",
            "hellaswag.json · choices:mean-logp acc_norm (choice-tokens)"} == \
        {c.split("/")[-1] for c in table.columns}  # acc_norm beside plain accuracy


def test_pairs_file_config_names_what_is_wrong(evaluated_lab, tmp_path):
    from dpo_core.errors import DataError

    with pytest.raises(DataError, match="No pairs file"):
        start_evaluation(evaluated_lab, ["builtin:tiny"], methods=[], pairs_file=str(tmp_path / "x.json"))
    path = tmp_path / "p.json"
    path.write_text("[]")
    with pytest.raises(ConfigError, match="score the file"):
        start_evaluation(evaluated_lab, ["builtin:tiny"], methods=[], pairs_file=str(path), file_as=[])
    with pytest.raises(ConfigError, match="Unknown judge"):
        start_evaluation(evaluated_lab, ["builtin:tiny", f"run:{RUN_ID}"], "tiny-pairs",
                            win_rate={"judge": "oracle"})


def test_hellaswag_noise_file_evaluates_as_choices_in_a_job(evaluated_lab):
    from tests.support import shared_data

    path = shared_data("hellaswag-noise", "val-1.json")
    job = _evaluate_now(evaluated_lab, ["builtin:tiny"], methods=[], pairs_file=str(path),
                          file_as=["choices", "pairs"], file_limit=4, batch_size=8)
    assert job["status"] == "completed", job["error_text"]
    methods = [e["method"] for e in list_evals(evaluated_lab)]
    assert sorted(methods) == ["choices:mean-logp", "pairs:mean-logp"]


def test_cli_eval_detach_scores_a_multiple_choice_file(evaluated_lab, tmp_path, capsys):
    import json

    from dpo_core.cli.main import main

    path = tmp_path / "hs.json"
    path.write_text(json.dumps(HELLASWAG))
    assert main(["eval", "--model", "builtin:tiny", "--pairs-file", str(path), "--as-choices",
                 "--detach"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert wait_job(evaluated_lab, job_id)["status"] == "completed"
    [summary] = list_evals(evaluated_lab)
    assert summary["method"] == "choices:mean-logp" and summary["n"] == 3


# ---------------------------------------------------------------------------------------------
# Suites on the page: the method and protocol chosen, every file's accuracy shown
# ---------------------------------------------------------------------------------------------
def test_suite_method_and_protocol_are_chosen_and_files_are_shown(evaluated_lab, tmp_path):
    folder = tmp_path / "blimp"
    folder.mkdir()
    (folder / "agreement.txt").write_text("the dog runs .\nthe dog run .\n" * 3)
    (folder / "island.txt").write_text("what did you see ?\nwhat did you see it ?\n" * 2)
    at = evaluate_page()
    assert at.selectbox(key="eval_suite_method").value == "sum-logp"
    assert at.radio(key="eval_suite_protocol").value == "whole-sentence"
    at.multiselect(key="eval_methods").set_value([])
    at.text_input(key="eval_suite").input(str(folder))
    at.selectbox(key="eval_suite_method").set_value("mean-logp")
    at.radio(key="eval_suite_protocol").set_value("after-first-token")
    at.button(key="eval_start").click().run()
    job = wait_job(evaluated_lab, at.session_state["eval_job"])
    assert job["status"] == "completed", job["error_text"]
    assert (job["config"]["suite_method"], job["config"]["suite_protocol"]) == (
        "mean-logp", "after-first-token")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    files = next(d.value for d in at.dataframe if "agreement" in d.value.index)
    assert set(files.index) == {"agreement", "island"}
    assert set(files.columns) == {f"{m} · suite:mean-logp (after-first-token)"
                                  for m in ("builtin:tiny", f"run:{RUN_ID}")}
    assert all("n=3" in c for c in files.loc["agreement"])
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Accuracy per file" in c and "island" in c for c in charts)


def test_flips_warn_when_the_methods_differ(evaluated_lab):
    base = _evaluate_now(evaluated_lab, ["builtin:tiny"], "tiny-pairs", "eval", ["mean-logp"])
    tuned = _evaluate_now(evaluated_lab, [f"run:{RUN_ID}"], "tiny-pairs", "eval", ["sum-logp"])
    [a], [b] = job_evals(evaluated_lab, base["id"]), job_evals(evaluated_lab, tuned["id"])
    at = evaluate_page()
    at.selectbox(key="flip_a").set_value(a)
    at.selectbox(key="flip_b").set_value(b).run()
    assert any("Different methods" in w.value for w in at.warning)
    at.selectbox(key="flip_b").set_value(a).run()
    assert any("Both evaluations are of builtin:tiny" in w.value for w in at.warning)


def test_flips_default_to_the_same_method_on_baseline_and_tuned(evaluated_lab):
    job = _evaluate_now(evaluated_lab, ["builtin:tiny", f"run:{RUN_ID}"], "tiny-pairs", "eval",
                        ["sum-logp", "mean-logp"])
    by = {(e["model"], e["method"]): e["id"] for e in list_evals(evaluated_lab)}
    assert job["status"] == "completed"
    at = evaluate_page()
    a, b = at.selectbox(key="flip_a").value, at.selectbox(key="flip_b").value
    assert (a, b) in {(by[("builtin:tiny", m)], by[(f"run:{RUN_ID}", m)])
                      for m in ("sum-logp", "mean-logp")}
    assert not at.warning
