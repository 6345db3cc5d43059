"""A finished tiny LoRA run made on the spot: for the demo's tests, its load test, and trying
`export-space` offline without training first."""

from __future__ import annotations

import json
from pathlib import Path

from ..jobs.rows import insert_job
from ..models import FORMAT_FILE, RUN_MODEL_FILE, TINY_SPEC, resolve_path
from ..store import Store, now
from ..training.metrics import write_metrics
from ..workspace import Workspace

RUN_ID = "run-tiny-demo"
EVAL_PROMPTS = ["what is that ?", "where is the ball ?", "can you see it ?"]


def make_sample_run(ws: Workspace, store: Store, run_id: str = RUN_ID, seed: int = 7) -> Path:
    """builtin:tiny + a LoRA adapter on q_proj/v_proj with seeded random weights, eval pairs,
    and a `runs` row with status completed. Returns the run folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny = Path(resolve_path(TINY_SPEC, ws))
    model = AutoModelForCausalLM.from_pretrained(tiny)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8,
                                                  target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # perturbed, so the fine-tuned side answers differently
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    run_dir = ws.runs / run_id
    final = run_dir / "final"
    peft_model.save_pretrained(final)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(final)
    (final / FORMAT_FILE).write_text((tiny / FORMAT_FILE).read_text())
    (final / RUN_MODEL_FILE).write_text(json.dumps({"base": TINY_SPEC, "kind": "lora"}))
    (run_dir / "config.yaml").write_text(f"model: {TINY_SPEC}\ndataset: tiny-pairs\n")
    with open(run_dir / "pairs.eval.jsonl", "w", encoding="utf-8") as f:
        for prompt in EVAL_PROMPTS:
            f.write(json.dumps({"prompt": prompt, "chosen": "it is a ball .",
                                "rejected": "ball"}) + "\n")
    config = {"model": TINY_SPEC, "dataset": "tiny-pairs", "method": "lora",
              "loss_type": "sigmoid", "beta": 0.1}
    with store.write() as conn:
        insert_job(conn, run_id, "train", "tiny demo", config, str(run_dir), status="completed",
                   finished=now())
        write_metrics(store, run_id, 2, {"eval_rewards/accuracies": 0.75})
    return run_dir
