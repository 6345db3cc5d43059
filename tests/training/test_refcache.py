"""Reference log-prob cache: same losses with and without it, and a new key for changed inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_core.training import runs
from dpo_core.training.config import RunConfig
from dpo_core.training.refcache import CACHE_DIR, cache_key, read_cache, write_cache
from tests.support import tiny_config, toy_dataset


@pytest.fixture
def toy(store, workspace_with_tiny):
    return toy_dataset(store, 12, 0)


def cached_config(**kw) -> RunConfig:
    return tiny_config(**{"save_steps": 10, "sample_prompts": 0,
                          "precompute_ref_log_probs": True, **kw})


def losses(store, run_id: str) -> list[float]:
    return [r["value"] for r in store.query(
        "SELECT value FROM metrics WHERE run_id=? AND key='loss' AND split='train' ORDER BY step",
        (run_id,))]


def train(store, workspace, cfg: RunConfig) -> str:
    run_id = runs.start_run(store, cfg, workspace)
    run = runs.wait_run(store, run_id, poll=0.3, timeout=600)
    assert run["status"] == "completed", run["error_text"]
    return run_id


def test_key_changes_with_every_input():
    base = dict(model="m", model_files=[], pairs="p", format={"kind": "plain"}, max_length=64,
                max_prompt_length=32, too_long="drop", truncation="keep_start", ld_alpha=None,
                dtype="torch.float32", precision="fp32")
    key = cache_key(base)
    assert key == cache_key(dict(base))
    for change in (dict(pairs="q"), dict(max_length=128), dict(model="n"),
                   dict(format={"kind": "chat"}), dict(truncation="keep_end"),
                   dict(dtype="torch.bfloat16"), dict(max_prompt_length=16),
                   dict(too_long="truncate"), dict(precision="bf16"),
                   dict(model_files=[["w", 1, 2]])):
        assert cache_key({**base, **change}) != key, change


def test_a_short_or_damaged_file_is_not_read(tmp_path):
    path = tmp_path / "k.jsonl"
    write_cache(path, [-1.5, -2.25], [-3.0, -4.125])
    assert read_cache(path, 2) == ([-1.5, -2.25], [-3.0, -4.125])
    assert read_cache(path, 3) is None
    path.write_text("{not json\n")
    assert read_cache(path, 1) is None


@pytest.mark.slow
def test_losses_are_identical_with_the_cache(store, workspace, toy, monkeypatch):
    cache = workspace.cache / CACHE_DIR
    first = train(store, workspace, cached_config(name="fills"))
    files = sorted(cache.glob("*.jsonl"))
    assert len(files) == 1  # train split only (no eval split here)
    second = train(store, workspace, cached_config(name="reads"))
    assert sorted(cache.glob("*.jsonl")) == files  # reused, not recomputed under a new key
    log = Path(runs.get_run(store, second)["run_dir"]) / "worker.log"
    assert "cache hit" in log.read_text()
    assert losses(store, first) == losses(store, second) and len(losses(store, first)) == 3
    monkeypatch.setenv("DPO_LAB_NO_REF_CACHE", "1")
    plain = train(store, workspace, cached_config(name="no cache", precompute_ref_log_probs=False))
    assert losses(store, plain) == pytest.approx(losses(store, first), rel=1e-4)
    # (a changed input gets its own key: test_every_input_of_a_frozen_run_is_in_its_key)


def test_the_reference_is_named_by_the_lab_key_never_by_hashing_every_weight(store, workspace,
                                                                            toy, monkeypatch):
    """TRL sha256es every weight to name its temporary precompute file (a minute for a 7B
    model); the lab's key names the same reference, so the weights are never hashed."""
    import trl.trainer.dpo_trainer as dpo

    from dpo_core.device import detect_device
    from dpo_core.training.refcache import expected_dtype, run_key
    from dpo_core.training.trl_args import to_trl
    from dpo_core.training.worker import lab_trainer, load_base_model, load_pairs

    def hashed(_module):
        raise AssertionError("every weight of the reference was hashed")

    monkeypatch.setattr(dpo, "hash_module", hashed)
    monkeypatch.setenv("DPO_LAB_NO_REF_CACHE", "1")  # even without the workspace cache
    cfg = cached_config(name="named")
    run_dir = Path(runs.get_run(store, runs.start_run(store, cfg, workspace,
                                                      launch=False))["run_dir"])
    args, peft_config = to_trl(cfg, run_dir, detect_device())
    model, tok, _ = load_base_model(run_dir, cfg, detect_device())
    train_set, _ = load_pairs(run_dir, cfg, tok)
    trainer = lab_trainer(cfg, run_dir, workspace.cache)(
        model=model, args=args, train_dataset=train_set, processing_class=tok,
        peft_config=peft_config)
    assert trainer._precompute_model_hash == run_key(run_dir, "train", cfg, expected_dtype(cfg))
    assert dpo.hash_module is hashed  # put back as it was
    # the pass ran in batches of similar lengths; each value is back at its own pair
    monkeypatch.undo()
    plain = dpo.DPOTrainer(model=load_base_model(run_dir, cfg, detect_device())[0], args=args,
                           train_dataset=train_set, processing_class=tok,
                           peft_config=peft_config)
    for column in ("ref_chosen_logps", "ref_rejected_logps"):
        assert trainer.train_dataset[column] == pytest.approx(plain.train_dataset[column],
                                                              abs=1e-4)


def test_every_input_of_a_frozen_run_is_in_its_key(tmp_path):
    """Each thing the reference log-probs depend on, changed alone in a frozen run folder,
    gives another key: dropping any part from `key_parts` makes this fail."""
    import dataclasses
    import json
    import os
    import time

    from dpo_core.training.refcache import run_key

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"w" * 8)
    run = tmp_path / "run"
    run.mkdir()

    def write(fingerprint="f1", pairs='{"prompt": "p", "chosen": "c", "rejected": "r"}\n',
              fmt=None):
        (run / "model.json").write_text(json.dumps({"fingerprint": fingerprint,
                                                    "path": str(model_dir)}))
        (run / "pairs.train.jsonl").write_text(pairs)
        (run / "prompt_format.json").write_text(json.dumps(fmt or {"kind": "plain"}))

    cfg = RunConfig(max_length=64, max_prompt_length=32, too_long="drop", precision="fp32")
    write()
    base = run_key(run, "train", cfg, "torch.float32")
    assert run_key(run, "train", cfg, "torch.float32") == base
    changes = {
        "model fingerprint": lambda: write(fingerprint="f2"),
        "pairs": lambda: write(pairs='{"prompt": "p", "chosen": "C", "rejected": "r"}\n'),
        "prompt format": lambda: write(fmt={"kind": "chat"}),
    }
    for what, change in changes.items():
        change()
        assert run_key(run, "train", cfg, "torch.float32") != base, what
        write()
    for what, other in {"max_length": {"max_length": 128}, "too_long": {"too_long": "truncate"},
                        "max_prompt_length": {"max_prompt_length": 16},
                        "precision": {"precision": "bf16"}}.items():
        assert run_key(run, "train", dataclasses.replace(cfg, **other),
                       "torch.float32") != base, what
    assert run_key(run, "train", cfg, "torch.bfloat16") != base, "dtype"
    assert run_key(run, "train", cfg, "torch.float32", truncation_mode="keep_end") != base
    assert run_key(run, "train", cfg, "torch.float32", ld_alpha=0.5) != base
    later = time.time() + 10  # the model rewritten in place: same name and size, new values
    os.utime(model_dir / "model.safetensors", (later, later))
    assert run_key(run, "train", cfg, "torch.float32") != base, "model files"
