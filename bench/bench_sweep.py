"""Benchmark: a sweep with the shared reference log-prob cache against the same sweep without it.

Both sweeps run the same N trials (grid over beta x learning rate, same seeds) in fresh
workspaces: with `ref_cache: true` the first run computes the reference model's log-probs once and
the others read them from workspace/cache/ref_logps; without it every run computes the reference
forward at every step. Reports total wall time of each sweep and the ratio (target <= 0.85), and
checks the completed runs' final losses agree.

    python bench/bench_sweep.py                       # tiny model, 4 runs
    python bench/bench_sweep.py --steps 100           # tiny, 10 epochs (as the CHILDES recipe)
    python bench/bench_sweep.py --model builtin:smollm2-135m-instruct --steps 20

Measured on 2 CPU cores (stop 12): default model, 20 steps (2 epochs of 40 pairs) 0.784;
tiny, 100 steps 0.761; tiny, 10 steps (1 epoch) 0.926, where process start, model load and each
run's evaluation dominate and the tiny reference forward costs milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sweep_config(opts, cached: bool):
    from dpo_core.sweeps.config import SweepConfig

    return SweepConfig(
        name="cached" if cached else "plain", base=str(ROOT / "recipes" / "train" / "smoke-tiny.yaml"),
        set={"model": opts.model, "dataset": "demo-instruct", "max_steps": opts.steps,
             "max_train_pairs": opts.pairs, "per_device_train_batch_size": opts.batch,
             "eval_steps": 0, "sample_prompts": 0, "save_steps": 100_000,
             "max_length": opts.max_length, "max_prompt_length": opts.max_length // 2,
             "logging_steps": 1},
        parameters={"beta": [0.1, 0.3], "learning_rate": [1e-4, 1e-3]},
        method="grid", metric="pair_accuracy", budget=opts.runs, eval_split="",
        eval_limit=opts.eval_pairs, ref_cache=cached)


def run_sweep(opts, cached: bool) -> dict:
    """A fresh workspace, the sweep start to finish; wall time and per-trial final losses."""
    home = Path(tempfile.mkdtemp(prefix=f"dpo-bench-sweep-{'c' if cached else 'p'}-"))
    os.environ["DPO_LAB_HOME"] = str(home)
    from dpo_core.data.demo_datasets import seed_workspace
    from dpo_core.models import resolve_path
    from dpo_core.store import forget_stores, open_store
    from dpo_core.sweeps.control import start_sweep, wait_sweep
    from dpo_core.workspace import get_workspace

    forget_stores()
    store = open_store()
    seed_workspace(store)
    resolve_path(opts.model, get_workspace())  # prepare the model outside the timing
    start = time.perf_counter()
    sweep_id = start_sweep(store, sweep_config(opts, cached))
    sweep = wait_sweep(store, sweep_id, poll=0.5)
    wall = time.perf_counter() - start
    trials = sweep["trials"]
    return {"wall_s": round(wall, 2), "status": sweep["status"],
            "completed": sum(t["status"] == "completed" for t in trials),
            "losses": [t["result"].get("metrics", {}).get("loss") for t in trials],
            "runtimes": [round(t["result"].get("runtime", 0.0), 2) for t in trials],
            "cache_files": len(list((home / "cache" / "ref_logps").glob("*.jsonl")))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--eval-pairs", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    plain = run_sweep(opts, cached=False)
    cached = run_sweep(opts, cached=True)
    diffs = [abs(a - b) for a, b in zip(plain["losses"], cached["losses"], strict=True)
             if a is not None and b is not None]
    report = {"model": opts.model, "runs": opts.runs, "steps": opts.steps,
              "without_cache_s": plain["wall_s"], "with_cache_s": cached["wall_s"],
              "ratio_with_vs_without": round(cached["wall_s"] / plain["wall_s"], 3),
              "max_final_loss_diff": max(diffs) if diffs else None,
              "plain": plain, "cached": cached}
    if opts.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{opts.runs}-run sweep on {opts.model}, {opts.steps} steps each: without cache "
              f"{plain['wall_s']:.1f} s, with cache {cached['wall_s']:.1f} s, ratio "
              f"{report['ratio_with_vs_without']:.3f} (target <= 0.85); max final-loss diff "
              f"{report['max_final_loss_diff']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
