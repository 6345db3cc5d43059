"""A best-of-N dataset made with the offline lexicon judge trains with the quick tiny recipe."""

from __future__ import annotations

import pytest

from dpo_core.builders.config import GenerateConfig
from dpo_core.builders.job import run_build
from dpo_core.data.datasets import count_pairs, get_dataset
from dpo_core.data.demo_datasets import seed_workspace
from dpo_core.jobs import lifecycle
from dpo_core.models import TINY_SPEC
from dpo_core.recipes import recipe_path
from dpo_core.training import metrics, runs
from dpo_core.training.config import RunConfig, apply_overrides


class Ctx:
    """A job context in-process: progress is ignored, never cancelled."""

    def __init__(self, store):
        self.store = store

    def progress(self, done, total, **counters):
        pass

    def cancelled(self) -> bool:
        return False


@pytest.mark.slow
def test_best_of_n_lexicon_dataset_trains_with_the_quick_recipe(workspace_with_tiny, store):
    seed_workspace(store)
    cfg = GenerateConfig.from_dict({
        "builder": "best-of-n", "output": "bon-lexicon", "model": TINY_SPEC, "judge": "lexicon",
        "source_dataset": "demo-instruct", "limit": 20, "n": 4, "batch_size": 20,
        "min_margin": 0.05, "seed": 3, "sampling": {"max_new_tokens": 12, "temperature": 1.0}})
    result = run_build(cfg, Ctx(store))
    ds = get_dataset(store, "bon-lexicon")
    assert result["complete"] and result["kept"] + result["dropped"] == 20
    assert count_pairs(store, ds.id, "train") == result["kept"] > 0  # the builder writes train

    recipe = RunConfig.load(recipe_path("train", "smoke-tiny"))
    run_cfg = apply_overrides(recipe, ["dataset=bon-lexicon", "eval_steps=0", "eval_split="])
    run_id = runs.start_run(store, run_cfg)
    run = runs.wait_run(store, run_id, poll=0.5)
    assert run["status"] == "completed", lifecycle.log_tail(run["run_dir"])
    losses = [m for m in metrics.read_metrics(store, run_id) if m["key"] == "loss"]
    assert losses and all(m["value"] == m["value"] for m in losses)  # logged, not NaN
    assert run["dataset_id"] == ds.id
