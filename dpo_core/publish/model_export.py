"""Export a finished run: its final/ folder as is, or LoRA merged into a standalone model, with a
model card carrying the config and final metrics; optionally pushed to the hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from ..access import require_owner
from ..errors import JobError
from ..models import FORMAT_FILE, RUN_MODEL_FILE, resolve_model
from ..store import Store
from ..training.runs import get_run
from ..workspace import get_workspace


def export_run(store: Store, run_id: str, *, merge: bool = True, out: str | Path | None = None,
               push_to: str | None = None) -> dict:
    """Write the run's model to `out` (default exports/<run-id>); returns {path, merged, pushed}."""
    require_owner("export models")
    run = get_run(store, run_id)
    final = Path(run["run_dir"] or "") / "final"
    if run["status"] != "completed" or not final.is_dir():
        raise JobError(f"Run {run['id']} is {run['status']} and has no final model.",
                       "Export a completed run (python -m dpo_core runs list).")
    dest = Path(out) if out else get_workspace().exports / run["id"]
    if dest.exists() and any(dest.iterdir()):
        raise JobError(f"The export folder {dest} is not empty.", "Pick a new --out folder.")
    info = json.loads((final / RUN_MODEL_FILE).read_text())
    work = dest.parent / f".{dest.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    merged = merge and info.get("kind") == "lora"
    if merged:
        loaded = resolve_model(f"run:{run['id']}")
        model = loaded.model.merge_and_unload()
        model.save_pretrained(work, safe_serialization=True)
        loaded.tokenizer.save_pretrained(work)
        shutil.copyfile(final / FORMAT_FILE, work / FORMAT_FILE)
    else:
        shutil.copytree(final, work)
    (work / "README.md").write_text(model_card(run, info, merged))
    if dest.exists():
        dest.rmdir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work.replace(dest)
    pushed = push(dest, push_to) if push_to else None
    return {"path": str(dest), "merged": merged, "pushed": pushed}


def model_card(run: dict, info: dict, merged: bool) -> str:
    """A README with the base model, the DPO config and the final metrics."""
    metrics = run["result"].get("metrics", {})
    keys = [k for k in ("loss", "rewards/accuracies", "rewards/margins", "eval_loss",
                        "eval_rewards/accuracies", "eval_rewards/margins") if k in metrics]
    table = "\n".join(f"| {k} | {metrics[k]:.4f} |" for k in keys)
    cfg = {k: v for k, v in run["config"].items() if k != "debug"}
    kind = "merged LoRA" if merged else info.get("kind", "")
    return f"""---
library_name: {"transformers" if merged or info.get("kind") == "full" else "peft"}
tags: [dpo, trl, dpo-lab]
---
# {run['name']}

DPO fine-tune ({kind}) of `{info.get('base', '')}` made with DPO Lab (TRL `DPOTrainer`),
run `{run['id']}`, {run['step']} optimizer steps.

## Final metrics

| metric | value |
|---|---|
{table}

## Training config

```yaml
{yaml.safe_dump(cfg, sort_keys=False)}```
"""


def push(folder: Path, repo_id: str) -> str:
    """Upload the folder to a hub model repo (needs network and a token)."""
    require_owner("export models")
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id)
    except Exception as exc:  # noqa: BLE001 - network/auth errors become one readable error
        raise JobError(f"Could not push {folder} to the hub repo {repo_id}: {exc}",
                       "Log in with `huggingface-cli login` and check the network; the "
                       "exported folder is kept.") from exc
    return f"https://huggingface.co/{repo_id}"
