"""Benchmark: a run through the lab vs a plain TRL script on the same model, pairs, config, seed.

Reports the step-time ratio (lab / plain, medians of each trainer's own `train_runtime` over
interleaved repeats), the largest
loss difference over the logged steps (the lab must train identically), and the same run with
the lab's metrics writer switched off (the writer's cost).

    python bench/bench_training.py --model builtin:tiny --steps 20
    python bench/bench_training.py --model builtin:smollm2-135m-instruct --steps 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAIN = r'''
import json, sys
from datasets import Dataset
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer
from peft import LoraConfig

spec = json.loads(open(sys.argv[1]).read())
rows = [json.loads(l) for l in open(spec["pairs"])]
rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]
tok = AutoTokenizer.from_pretrained(spec["model"])
if tok.pad_token is None:
    tok.pad_token = tok.eos_token
model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
args = DPOConfig(**spec["args"])
peft = LoraConfig(**spec["lora"]) if spec["lora"] else None
trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                     processing_class=tok, peft_config=peft)
out = trainer.train()
losses = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
print("RESULT " + json.dumps({"runtime": out.metrics["train_runtime"], "losses": losses}))
'''


def lab_run(store, cfg, writer: bool = True) -> dict:
    """Start a lab run and wait; returns runtime and per-step losses."""
    from dpo_core.training.metrics import read_metrics
    from dpo_core.training.runs import start_run, wait_run

    os.environ["DPO_LAB_BENCH_NO_WRITER"] = "" if writer else "1"
    run_id = start_run(store, cfg)
    run = wait_run(store, run_id, poll=2.0)  # a light watcher, like a user's terminal
    if run["status"] != "completed":
        raise SystemExit(f"lab run {run_id} {run['status']}: {run['error_text'][-1500:]}")
    result = run["result"].get("metrics", {})
    losses = {r["step"]: r["value"] for r in read_metrics(store, run_id)
              if r["key"] == "loss"}
    return {"id": run_id, "run_dir": run["run_dir"], "runtime": result.get("train_runtime"),
            "losses": losses}


def plain_run(cfg, run_dir: str, out_dir: Path) -> dict:
    """The same training as a bare TRL script in a fresh process (no lab callback, no store)."""
    from dpo_core.device import detect_device
    from dpo_core.training.trl_args import lora_config, to_trl

    args, _ = to_trl(cfg, out_dir, detect_device())
    keep = ("loss_type", "beta", "label_smoothing", "learning_rate", "lr_scheduler_type",
            "warmup_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
            "max_steps", "num_train_epochs", "max_length", "bf16", "fp16", "use_cpu", "seed",
            "data_seed", "logging_steps", "save_strategy", "report_to", "disable_tqdm",
            "dataloader_num_workers", "activation_checkpointing")
    spec_args = {k: getattr(getattr(args, k), "value", getattr(args, k)) for k in keep}
    spec_args.update(output_dir=str(out_dir), save_strategy="no", report_to="none",
                     logging_first_step=False)
    lora = lora_config(cfg)
    lora_kw = None if lora is None else {
        "r": lora.r, "lora_alpha": lora.lora_alpha, "lora_dropout": lora.lora_dropout,
        "target_modules": lora.target_modules if isinstance(lora.target_modules, str)
        else sorted(lora.target_modules), "bias": "none", "task_type": "CAUSAL_LM"}
    model_path = json.loads((Path(run_dir) / "model.json").read_text())["path"]
    spec = {"pairs": str(Path(run_dir) / "pairs.train.jsonl"), "model": model_path,
            "args": spec_args, "lora": lora_kw}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "spec.json").write_text(json.dumps(spec, default=str))
    (out_dir / "plain.py").write_text(PLAIN)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(out_dir / "plain.py"), str(out_dir / "spec.json")],
                          capture_output=True, text=True, env=env,
                          start_new_session=True)  # its own session, as the lab's worker
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not line:
        raise SystemExit(f"plain TRL script failed:\n{done.stderr[-3000:]}")
    data = json.loads(line[-1][7:])
    data["losses"] = {int(k): v for k, v in data["losses"].items()}
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--method", default="lora", choices=("lora", "full"))
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each kind, interleaved; medians are compared")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    os.environ["DPO_LAB_HOME"] = str(home)
    from dpo_core.data.demo_datasets import seed_workspace
    from dpo_core.store import open_store
    from dpo_core.training.config import RunConfig

    store = open_store()
    seed_workspace(store)
    cfg = RunConfig(name="bench", model=opts.model, dataset="demo-instruct", method=opts.method,
                    max_steps=opts.steps, per_device_train_batch_size=opts.batch,
                    learning_rate=1e-4, logging_steps=1, save_steps=10_000, eval_steps=0,
                    max_length=opts.max_length, max_prompt_length=opts.max_length // 2,
                    sample_prompts=0)
    t = time.time()
    labs, plains, offs = [], [], []
    for i in range(opts.repeats):  # interleaved, so drifting machine load hits all three alike
        labs.append(lab_run(store, cfg))
        plains.append(plain_run(cfg, labs[0]["run_dir"], home / f"plain{i}"))
        offs.append(lab_run(store, cfg, writer=False))
    lab, plain, lab_off = (statistics.median(r["runtime"] for r in runs)
                           for runs in (labs, plains, offs))
    diffs = [abs(labs[0]["losses"][s] - plains[0]["losses"][s]) for s in plains[0]["losses"]
             if s in labs[0]["losses"]]
    report = {
        "model": opts.model, "method": opts.method, "steps": opts.steps,
        "repeats": opts.repeats, "lab_runtime_s": lab, "plain_runtime_s": plain,
        "step_time_ratio_lab_vs_plain": round(lab / plain, 3),
        "writer_off_runtime_s": lab_off,
        "step_time_ratio_writer_on_vs_off": round(lab / lab_off, 3),
        "samples_s": {"lab": [r["runtime"] for r in labs],
                      "plain": [r["runtime"] for r in plains],
                      "writer_off": [r["runtime"] for r in offs]},
        "logged_steps_compared": len(diffs), "max_abs_loss_diff": max(diffs) if diffs else None,
        "wall_s": round(time.time() - t, 1),
    }
    if opts.json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            print(f"{k:<34} {v}")


if __name__ == "__main__":
    main()
