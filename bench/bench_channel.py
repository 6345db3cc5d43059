"""Benchmark: the channel (a run's events as lines in its folder, ingested by the lab) against
today's direct store writes, on the same tiny run (300 steps, a metric record every step).

Reports the training-time ratio (channel / direct, each run's own `train_runtime`, medians over
interleaved repeats), the worker's cost per metric record on each path (microseconds, median
of 300), and, for the channel, the lag from a metric line written by the worker to
the value being in the store, read the way the Runs page reads it (a poll every `--poll`
seconds: median and p95).

    python bench/bench_channel.py --steps 300 --repeats 1 --poll 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup(home: Path):
    import os

    os.environ["DPO_LAB_HOME"] = str(home)
    from dpo_core.models import prepare_tiny_model
    from dpo_core.store import Store
    from dpo_core.workspace import get_workspace
    from tests.support import toy_dataset

    ws = get_workspace(home)
    prepare_tiny_model(ws.models / "tiny")
    store = Store(ws.db_path)
    toy_dataset(store, 64, 0)
    return store


def one_run(store, steps: int, channel: bool, poll: float) -> dict:
    """One run; with `channel` its job reports through channel.jsonl. Returns the run's own
    train_runtime and, for the channel, the lag of every metric row."""
    from dpo_core.jobs import lifecycle
    from dpo_core.training import metrics, runs
    from tests.support import tiny_config

    cfg = tiny_config(max_steps=steps, save_steps=10_000, sample_prompts=0, logging_steps=1)
    run_id = runs.start_run(store, cfg, launch=False)
    if channel:
        job_file = Path(runs.get_run(store, run_id)["run_dir"]) / "job.json"
        job = json.loads(job_file.read_text())
        job_file.write_text(json.dumps({**job, "channel": True}))
        result = runs.get_run(store, run_id)["result"]
        lifecycle.update_job(store, run_id, result_json=json.dumps({**result, "channel": True}))
    lags, last_id = [], 0
    while True:
        lifecycle.schedule(store)
        run = runs.get_run(store, run_id)  # what the Runs page does: this ingests the channel
        seen = time.time()
        for row in metrics.read_metrics(store, run_id, after_id=last_id):
            last_id = row["id"]
            if row["key"] == "loss":
                lags.append(seen - row["at"])
        if run["status"] in ("completed", "failed", "cancelled", "lost"):
            break
        time.sleep(poll)
    if run["status"] != "completed":
        raise SystemExit(f"run {run_id} {run['status']}: {run['error_text']}")
    runtime = metrics.last_values(store, run_id, ["train_runtime"])["train_runtime"]
    steps_logged = metrics.logged_steps(store, run_id)[0]
    return {"runtime": runtime, "lags": lags, "steps": steps_logged}


def writer_cost(store, run_dir: Path, records: int = 300) -> dict:
    """Microseconds per metric record written by the worker: a store upsert (a write
    transaction) against a channel line (one append), on a TRL-sized log record, median."""
    from dpo_core.jobs.channel import Channel
    from dpo_core.training.metrics import write_metrics

    logs = {k: 0.5 for k in ("loss", "grad_norm", "learning_rate", "entropy", "num_tokens",
                             "logits/chosen", "logits/rejected", "mean_token_accuracy",
                             "rewards/chosen", "rewards/rejected", "rewards/accuracies",
                             "rewards/margins", "logps/chosen", "logps/rejected", "epoch")}
    run_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, sink in (("store", store), ("channel", Channel(run_dir))):
        times = []
        for step in range(1, records + 1):
            t = time.perf_counter()
            write_metrics(sink, "bench-writer", step, logs)
            times.append(time.perf_counter() - t)
        out[name] = round(statistics.median(times) * 1e6, 1)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between the lab's reads")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = setup(Path(tmp) / "lab")
        direct, channel, lags = [], [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            d = one_run(store, args.steps, False, args.poll)
            c = one_run(store, args.steps, True, args.poll)
            assert d["steps"] == c["steps"], (d["steps"], c["steps"])
            direct.append(d["runtime"])
            channel.append(c["runtime"])
            lags += c["lags"]
        writer_us = writer_cost(store, Path(tmp) / "writer")
    ratio = statistics.median(channel) / statistics.median(direct)
    print(json.dumps({
        "steps": args.steps, "repeats": args.repeats, "poll_s": args.poll,
        "direct_train_runtime_s": round(statistics.median(direct), 2),
        "channel_train_runtime_s": round(statistics.median(channel), 2),
        "ratio_channel_over_direct": round(ratio, 3),
        "writer_us_per_record": writer_us,
        "lag_metric_to_store_s": {"median": round(statistics.median(lags), 3),
                                  "p95": round(percentile(lags, 0.95), 3), "n": len(lags)},
    }, indent=2))


if __name__ == "__main__":
    main()
