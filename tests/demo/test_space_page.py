"""What the Space page and README tell a visitor: every number with its n and scoring protocol,
and plainly when the baseline is not the base the lab evaluated."""

from __future__ import annotations

from dpo_core.demo.app import describe
from dpo_core.demo.config import load_config
from dpo_core.evaluation.results import save_eval
from dpo_core.models import DEFAULT_SPEC, RUN_MODEL_FILE
from dpo_core.publish.sample_run import EVAL_PROMPTS, RUN_ID, make_sample_run
from dpo_core.publish.space_export import export_space
from tests.demo.space_support import LIMITS


def _eval(store, model, accuracy, n=40):
    save_eval(store, model, None, "blimp", "suite:sum-logp",
              {"accuracy": accuracy, "ci_low": accuracy - 0.1, "ci_high": accuracy + 0.1, "n": n,
               "scope": "full", "protocol": "whole-sentence", "files": {}, "suite": "blimp"},
              [])


def test_every_number_on_the_page_has_its_n(workspace_with_tiny, store, tmp_path):
    make_sample_run(workspace_with_tiny, store)
    _eval(store, "builtin:tiny", 0.55)
    _eval(store, f"run:{RUN_ID}", 0.61)
    _eval(store, "builtin:other", 0.9)  # another model: not on this Space's page
    export_space(store, RUN_ID, tmp_path / "s", limits=LIMITS)
    config = load_config(tmp_path / "s" / "space_config.json")
    results = config.run["results"]
    assert [r["metric"] for r in results] == [
        "eval_rewards/accuracies (training's eval split)",
        "blimp · suite:sum-logp accuracy, fine-tuned (whole-sentence)",
        "blimp · suite:sum-logp accuracy, baseline (whole-sentence)"]
    assert [r["n"] for r in results] == [len(EVAL_PROMPTS), 40, 40]
    assert results[1]["value"] == "61.0% [51.0%, 71.0%]"
    page = describe(config)
    assert "| Measured | value | n |" in page
    assert f"| eval_rewards/accuracies (training's eval split) | 0.75 | {len(EVAL_PROMPTS)} |" \
        in page
    readme = (tmp_path / "s" / "README.md").read_text()
    assert "| blimp · suite:sum-logp accuracy, baseline (whole-sentence) | 55.0% [45.0%, 65.0%]" \
        " | 40 |" in readme
    assert "builtin:other" not in readme and "About the baseline" not in page  # base copied in


def test_a_hub_baseline_says_plainly_it_is_not_the_evaluated_base(workspace_with_tiny, store,
                                                                  tmp_path):
    make_sample_run(workspace_with_tiny, store)
    with store.write() as conn:  # a run of the lab's default model (made from the GGUF)
        conn.execute("UPDATE runs SET config_json=json_set(config_json, '$.model', ?)",
                     (DEFAULT_SPEC,))
    final = workspace_with_tiny.runs / RUN_ID / "final" / RUN_MODEL_FILE
    final.write_text(final.read_text().replace("builtin:tiny", DEFAULT_SPEC))
    result = export_space(store, RUN_ID, tmp_path / "s", limits=LIMITS)
    config = load_config(tmp_path / "s" / "space_config.json")
    assert config.base == "HuggingFaceTB/SmolLM2-135M-Instruct" and result.note
    for text in (config.baseline_note, describe(config),
                 (tmp_path / "s" / "README.md").read_text()):
        assert "dequantized GGUF" in text and "not the model the lab's numbers" in text
        assert "--copy-base" in text


def test_an_old_config_still_renders_its_metrics(tmp_path):
    """Spaces exported before results carried n show their numbers as 'n not recorded'."""
    from dpo_core.demo.config import DemoConfig

    config = DemoConfig(base="b", adapter="a", run={"metrics": {"loss": 0.5}})
    assert "| loss | 0.5 | not recorded |" in describe(config)
