"""Benchmark: the lab's planned execution vs `execution: trl-defaults`, same optimisation.

For each model x dataset, LoRA runs of both executions (interleaved repeats, the real job path:
`start_run` + the worker) with the same learning rate, beta, batch, epochs and seed. Reports
the medians of each run's training time (the trainer's set-up, where TRL tokenizes and
precomputes the reference, plus `train_runtime`; the job's wall time, model loading and Python
start-up included, beside it), the tokens/s ratio (real prompt + reply tokens of the epochs /
training time; target >= 1.5 on CPU), the peak RSS of the job process (and CUDA max
allocated where there is a GPU), the held-out implicit-reward accuracy of each final model on
the dataset's eval split with bootstrap 95% intervals, and the final train loss difference.
Then the padding share of an epoch of the real CHILDES train split (../shared/data/childes-dpo)
in random order and grouped by length.

    python bench/bench_execution.py --models builtin:tiny --pairs 64 --repeats 3
    python bench/bench_execution.py --models builtin:smollm2-135m-instruct --pairs 48 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHILDES = ROOT.parent / "shared" / "data" / "childes-dpo" / "huggingface_dpo_format.json"
# final train loss: the mean logged loss over the last epoch (the same pairs in both runs, in
# another order; one 4-pair batch alone is too noisy to compare); |lab - trl-defaults| below
# this counts as the same
LOSS_TOLERANCE = 0.05


def base_config(model: str, dataset: str, opts):
    from dpo_core.training.config import LoraSettings, RunConfig

    return RunConfig(name=f"bench-{dataset}", model=model, dataset=dataset, method="lora",
                     lora=LoraSettings(r=8, alpha=16, dropout=0.0),
                     num_train_epochs=opts.epochs, per_device_train_batch_size=opts.batch,
                     learning_rate=1e-3 if model == "builtin:tiny" else 2e-4, beta=0.1,
                     max_train_pairs=opts.pairs, max_eval_pairs=opts.eval_pairs,
                     max_prompt_length=256, logging_steps=1, save_steps=100_000, eval_steps=0,
                     sample_prompts=0, seed=42)


def peak_rss_mb(pid: int | None) -> float:
    """The job process's peak resident set (VmHWM) so far."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, TypeError, ValueError):
        pass
    return 0.0


def one_run(store, cfg) -> dict:
    """A run through the lab's job path; wall time, peak RSS, losses and its folder."""
    from dpo_core.training.metrics import read_metrics
    from dpo_core.training.runs import read_plan, start_run, wait_run

    peak = {"rss": 0.0}

    def tick(run: dict) -> None:
        peak["rss"] = max(peak["rss"], peak_rss_mb(run.get("pid")))

    run_id = start_run(store, cfg)
    run = wait_run(store, run_id, poll=0.5, on_tick=tick)
    if run["status"] != "completed":
        raise SystemExit(f"run {run_id} {run['status']}: {run['error_text'][-1500:]}")
    losses = [r["value"] for r in read_metrics(store, run_id) if r["key"] == "loss"]
    plan = read_plan(run)
    metrics = run["result"]["metrics"]
    return {"id": run_id, "run_dir": run["run_dir"], "wall_s": run["finished"] - run["started"],
            # training time: the trainer's set-up (tokenizing, the reference precompute) + train
            "train_s": run["result"]["trainer_build_s"] + float(metrics["train_runtime"]),
            "peak_rss_mb": round(peak["rss"], 1),
            "final_loss": statistics.mean(losses[-max(1, int(len(losses) / cfg.num_train_epochs)):]),
            "last_step_loss": losses[-1],
            "train_loss": metrics.get("train_loss"),
            "plan": {k: c.value for k, c in plan.choices.items()} if plan else {}}


def trained_tokens(run_dir: str, model_path: str, epochs: float) -> int:
    """Real (unpadded) tokens of the frozen train pairs over the epochs: prompt + chosen and
    prompt + rejected, as TRL trains them (EOS appended)."""
    from dpo_core.models import load_tokenizer

    tok = load_tokenizer(model_path)
    total = 0
    for line in Path(run_dir, "pairs.train.jsonl").read_text().splitlines():
        row = json.loads(line)
        p = len(tok(row["prompt"], add_special_tokens=False)["input_ids"])
        for side in ("chosen", "rejected"):
            total += p + len(tok(row[side], add_special_tokens=False)["input_ids"]) + 1
    return int(total * epochs)


def implicit_accuracy(run_dir: str) -> list[int]:
    """Per held-out pair: 1 when the trained model's implicit reward prefers chosen
    (beta * [(log pi - log ref)(chosen) - (log pi - log ref)(rejected)] > 0)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from dpo_core.models import load_tokenizer

    model_path = json.loads(Path(run_dir, "model.json").read_text())["path"]
    tok = load_tokenizer(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(Path(run_dir) / "final")).eval()

    def logp(prompt: str, reply: str) -> float:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        r = tok(reply + (tok.eos_token or ""), add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p + r])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].log_softmax(-1)
        picked = logits.gather(1, ids[0, 1:, None])[:, 0]
        return float(picked[len(p) - 1:].sum())

    hits = []
    for line in Path(run_dir, "pairs.eval.jsonl").read_text().splitlines():
        row = json.loads(line)
        policy = logp(row["prompt"], row["chosen"]) - logp(row["prompt"], row["rejected"])
        with model.disable_adapter():
            ref = logp(row["prompt"], row["chosen"]) - logp(row["prompt"], row["rejected"])
        hits.append(int(policy - ref > 0))
    return hits


def bootstrap(hits: list[int], n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the 95% bootstrap interval of an accuracy."""
    if not hits:
        return 0.0, 0.0, 0.0
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(hits, k=len(hits))) / len(hits) for _ in range(n))
    return sum(hits) / len(hits), means[int(0.025 * n)], means[int(0.975 * n) - 1]


def compare(store, model: str, dataset: str, opts) -> dict:
    """Both executions on one model x dataset, interleaved; medians and quality."""
    import dataclasses

    cfg = base_config(model, dataset, opts)
    warm_files(model)
    runs = {"lab": [], "trl-defaults": []}
    for repeat in range(opts.repeats):  # interleaved, so drifting machine load hits both alike
        order = list(runs) if repeat % 2 == 0 else list(runs)[::-1]  # neither always first
        for execution in order:
            runs[execution].append(one_run(store, dataclasses.replace(cfg, execution=execution)))
    first = runs["lab"][0]
    model_path = json.loads(Path(first["run_dir"], "model.json").read_text())["path"]
    tokens = trained_tokens(first["run_dir"], model_path, opts.epochs)
    out = {"model": model, "dataset": dataset, "pairs": opts.pairs, "epochs": opts.epochs,
           "repeats": opts.repeats, "tokens": tokens}
    for execution, done in runs.items():
        train = statistics.median(r["train_s"] for r in done)
        acc = bootstrap(implicit_accuracy(done[0]["run_dir"]))
        out[execution] = {
            "train_s": round(train, 2), "tokens_per_s": round(tokens / train, 1),
            "trains_s": [round(r["train_s"], 2) for r in done],
            "job_wall_s": round(statistics.median(r["wall_s"] for r in done), 2),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in done),
            "final_loss": round(done[0]["final_loss"], 4),
            "last_step_loss": round(done[0]["last_step_loss"], 4),
            "heldout_accuracy": [round(x, 3) for x in acc], "plan": done[0]["plan"]}
    lab, trl = out["lab"], out["trl-defaults"]
    out["tokens_per_s_ratio"] = round(lab["tokens_per_s"] / trl["tokens_per_s"], 2)
    out["final_loss_diff"] = round(abs(lab["final_loss"] - trl["final_loss"]), 4)
    out["loss_within_tolerance"] = out["final_loss_diff"] <= LOSS_TOLERANCE
    la, ta = lab["heldout_accuracy"], trl["heldout_accuracy"]
    out["accuracy_within_each_others_ci"] = ta[1] <= la[0] <= ta[2] and la[1] <= ta[0] <= la[2]
    return out


def warm_files(model: str) -> None:
    """Read the model's files once, so the first run timed does not also pay for reading them
    from disk (its weights are memory-mapped: whichever run touches them first would)."""
    from dpo_core.models import resolve_path

    folder = Path(resolve_path(model))
    for f in folder.rglob("*") if folder.is_dir() else []:
        if f.is_file():
            with open(f, "rb") as handle:
                while handle.read(1 << 24):
                    pass


def childes_padding(batch: int, accumulation: int) -> dict | str:
    """Padding share of an epoch of the real CHILDES train split, random vs grouped."""
    if not CHILDES.is_file():
        return f"skipped: {CHILDES} is not present (../shared/data is outside the repository)"
    from dpo_core.models import TINY_SPEC, resolve_path
    from dpo_core.training.config import RunConfig
    from dpo_core.training.planner import Lengths, padding_shares

    tok_path = resolve_path(TINY_SPEC)
    try:
        from dpo_core.models import DEFAULT_SPEC, builtin_dir, is_ready

        folder = builtin_dir(DEFAULT_SPEC.removeprefix("builtin:"))
        if is_ready(folder):
            tok_path = str(folder)
    except Exception:  # noqa: BLE001 - the tiny tokenizer is the fallback
        pass
    from dpo_core.models import load_tokenizer

    tok = load_tokenizer(tok_path)
    rows = json.loads(CHILDES.read_text())

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    lengths = Lengths([count(r["prompt"]) for r in rows], [count(r["chosen"]) + 1 for r in rows],
                      [count(r["rejected"]) + 1 for r in rows])
    cfg = RunConfig(per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation)
    shares = padding_shares(lengths, cfg)
    return {"pairs": len(rows), "tokenizer": Path(tok_path).name, "batch": batch,
            "accumulation": accumulation, "random": round(shares["random"], 3),
            "by_length": round(shares["by_length"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="builtin:tiny,builtin:smollm2-135m-instruct")
    parser.add_argument("--datasets", default="demo-childes,demo-instruct")
    parser.add_argument("--pairs", type=int, default=64, help="train pairs per run (0 = all)")
    parser.add_argument("--eval-pairs", type=int, default=64, help="held-out pairs scored")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each execution, interleaved; medians are compared")
    parser.add_argument("--padding-only", action="store_true",
                        help="only the CHILDES padding shares")
    parser.add_argument("--ref-cache", action="store_true",
                        help="let repeats reuse the cached reference log-probs (as sweeps do)")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()

    home = Path(os.environ.get("DPO_LAB_BENCH_HOME") or tempfile.mkdtemp(prefix="dpo-bench-"))
    os.environ["DPO_LAB_HOME"] = str(home)
    # each repeat computes its reference itself (a cache hit would flatter the later repeats)
    os.environ["DPO_LAB_NO_REF_CACHE"] = "" if opts.ref_cache else "1"
    from dpo_core.data.demo_datasets import seed_workspace
    from dpo_core.models import prepare_tiny_model
    from dpo_core.store import open_store
    from dpo_core.workspace import get_workspace

    ws = get_workspace()
    if not (ws.models / "tiny").is_dir():
        prepare_tiny_model(ws.models / "tiny")
    store = open_store()
    seed_workspace(store)
    started = time.time()
    report = {"device": _device(), "results": [],
              "childes_padding": childes_padding(opts.batch, 1)}
    if not opts.padding_only:
        for model in opts.models.split(","):
            for dataset in opts.datasets.split(","):
                result = compare(store, model, dataset, opts)
                report["results"].append(result)
                if not opts.json:
                    _print(result)
    report["wall_s"] = round(time.time() - started, 1)
    if opts.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(f"device: {report['device']}")
        print(f"CHILDES train split, padding share of an epoch: {report['childes_padding']}")
        print(f"bench wall time: {report['wall_s']} s")


def _device() -> str:
    from dpo_core.device import detect_device

    return detect_device().label


def _print(r: dict) -> None:
    lab, trl = r["lab"], r["trl-defaults"]
    print(f"\n{r['model']} on {r['dataset']}: {r['pairs']} pairs x {r['epochs']:g} epochs, "
          f"{r['repeats']} interleaved repeats, {r['tokens']} real tokens")
    for name, x in (("lab", lab), ("trl-defaults", trl)):
        acc = x["heldout_accuracy"]
        print(f"  {name:<13} training {x['train_s']:>7.2f} s (median of {x['trains_s']}; job "
              f"{x['job_wall_s']:.1f} s)  "
              f"{x['tokens_per_s']:>8.1f} tok/s  peak RSS {x['peak_rss_mb']:.0f} MB  "
              f"last-epoch loss {x['final_loss']:.4f}  held-out accuracy {acc[0]:.3f} "
              f"[{acc[1]:.3f}, {acc[2]:.3f}]")
    print(f"  tokens/s ratio lab / trl-defaults: {r['tokens_per_s_ratio']}")
    print(f"  last-epoch train loss diff: {r['final_loss_diff']} (tolerance {LOSS_TOLERANCE}: "
          f"{'within' if r['loss_within_tolerance'] else 'OUTSIDE'}); held-out accuracies "
          f"within each other's 95% interval: {r['accuracy_within_each_others_ci']}")
    print(f"  lab plan: {lab['plan']}")


if __name__ == "__main__":
    main()
