"""How right is `train --estimate`? Its step time and whole-run time against real runs of the
same configs, on three configs (tiny LoRA, the default model with LoRA, the default model fully
fine-tuned). The baseline is the instant FLOPs-based estimate (`--estimate --rough`), measured
in the same session.

For each config, interleaved over the repeats: the measured estimate, the rough one, then a
real run; the run's step time is the median gap between its logged steps (logging_steps=1) and
its whole time runs from queueing to the final status. Prints each estimate's error (estimate /
real - 1) and the median absolute error per kind. Target: the measured step within 25%.

    python bench/bench_estimate.py [--repeats 2] [--only tiny]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = {
    "tiny-lora": dict(model="builtin:tiny", per_device_train_batch_size=4, max_steps=20),
    "smollm2-lora": dict(model="builtin:smollm2-135m-instruct", per_device_train_batch_size=2,
                         max_steps=8),
    "smollm2-full": dict(model="builtin:smollm2-135m-instruct", method="full",
                         per_device_train_batch_size=1, max_steps=6, learning_rate=1e-6),
}
TARGET = 0.25


def workspace() -> Path:
    """A fresh lab whose default model links a prepared one (~/.dpo_lab) when there is one."""
    home = Path(tempfile.mkdtemp(prefix="dpo-bench-estimate-"))
    os.environ["DPO_LAB_HOME"] = str(home)
    prepared = Path.home() / ".dpo_lab/models/smollm2-135m-instruct"
    if (prepared / "READY.json").is_file():
        (home / "models").mkdir(parents=True)
        (home / "models/smollm2-135m-instruct").symlink_to(prepared, target_is_directory=True)
    return home


def real_step_and_total(store, run: dict) -> tuple[float, float]:
    rows = store.query("SELECT step, at FROM metrics WHERE run_id=? AND key='loss' "
                       "ORDER BY step", (run["id"],))
    gaps = [b["at"] - a["at"] for a, b in zip(rows, rows[1:], strict=False)
            if b["step"] == a["step"] + 1]
    return statistics.median(gaps), run["finished"] - run["created"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", choices=list(CONFIGS), action="append")
    opts = parser.parse_args()
    home = workspace()
    from dpo_core.data.demo_datasets import seed_workspace
    from dpo_core.store import open_store
    from dpo_core.training.config import RunConfig
    from dpo_core.training.estimate import estimate
    from dpo_core.training.runs import start_run, wait_run

    store = open_store()
    seed_workspace(store)
    rows: dict[str, list[dict]] = {name: [] for name in opts.only or CONFIGS}
    for _ in range(opts.repeats):
        for name in rows:
            cfg = RunConfig(name=name, dataset="demo-instruct", logging_steps=1, eval_steps=10,
                            save_steps=10_000, max_length=192, max_prompt_length=96,
                            sample_prompts=1, sample_max_new_tokens=16,
                            **{"learning_rate": 5e-5, **CONFIGS[name]})
            measured = estimate(cfg, store=store, measure=True)
            rough = estimate(cfg, store=store)
            run = wait_run(store, start_run(store, cfg), poll=1.0)
            if run["status"] != "completed":
                raise SystemExit(f"{name}: {run['status']}: {run['error_text'][-800:]}")
            step, total = real_step_and_total(store, run)
            rows[name].append({"step": step, "total": total,
                               "measured": measured.seconds_per_step,
                               "rough": rough.seconds_per_step,
                               "measured_total": measured.run_seconds["total"],
                               "range": (measured.run_seconds["low"],
                                         measured.run_seconds["high"]),
                               "rough_total": rough.run_seconds["total"]})
    errors = {"measured": [], "rough": []}
    print(f"{'config':14} {'real step':>10} {'measured':>10} {'err':>6} {'rough':>9} {'err':>7}"
          f"   {'real run':>8} {'estimate [range]':>24} {'rough':>7}")
    for name, results in rows.items():
        med = {k: statistics.median(r[k] for r in results)
               for k in ("step", "total", "measured", "rough", "measured_total", "rough_total")}
        low = statistics.median(r["range"][0] for r in results)
        high = statistics.median(r["range"][1] for r in results)
        e_m, e_r = med["measured"] / med["step"] - 1, med["rough"] / med["step"] - 1
        errors["measured"].append(abs(e_m))
        errors["rough"].append(abs(e_r))
        print(f"{name:14} {med['step']:9.3f}s {med['measured']:9.3f}s {e_m:+6.0%} "
              f"{med['rough']:8.3f}s {e_r:+7.0%}   {med['total']:7.1f}s "
              f"{med['measured_total']:7.1f}s [{low:5.1f}-{high:5.1f}] {med['rough_total']:6.1f}s")
    worst = max(errors["measured"])
    print(f"median |error| of the step time: measured {statistics.median(errors['measured']):.0%}"
          f", rough (baseline) {statistics.median(errors['rough']):.0%}; worst measured "
          f"{worst:.0%} (target <= {TARGET:.0%})")
    shutil.rmtree(home, ignore_errors=True)
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
