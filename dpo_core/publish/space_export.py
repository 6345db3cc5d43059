"""Turn a finished run into a self-contained Hugging Face Space folder (and optionally push it).

The folder runs with `python app.py` and holds no `dpo_core` import: the demo's modules are
copied in as the package `dpo_demo/`, next to the config, the adapter (or full weights) and,
for local bases, the base model. Nothing from the workspace beyond those files is copied.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .. import demo
from ..access import require_owner
from ..data.datasets import pair_texts
from ..demo.config import BASE_ENV, CONFIG_FILE, DemoConfig, Limits, write_config
from ..errors import ConfigError, DPOLabError, ModelError
from ..evaluation.results import list_evals
from ..jobs.rows import find_row
from ..models import (
    DEFAULT_SPEC,
    FORMAT_FILE,
    RUN_MODEL_FILE,
    SMOLLM2_PACKAGE,
    TINY_SPEC,
    builtin_dir,
    resolve_path,
)
from ..store import Store, open_store
from ..training.metrics import last_values
from ..workspace import Workspace, get_workspace

DEMO_MODULES = ("config.py", "engine.py", "formats.py", "guard.py", "votes.py", "app.py",
                "kernels.py")
PACKAGE = "dpo_demo"
PINNED = ("torch", "transformers", "peft", "gradio", "accelerate")
HUB_IDS = {DEFAULT_SPEC: "HuggingFaceTB/SmolLM2-135M-Instruct",
           "builtin:smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# files a model folder needs; anything else (logs, .env, optimizer state) stays behind
MODEL_FILES = re.compile(r"^(?!\.)[\w.-]+\.(json|safetensors|txt|model|jinja)$")
# measured on the run's eval split at its last evaluation (the training loss, a moving
# per-batch number without a fixed n, is left out)
KEY_METRICS = ("eval_rewards/accuracies", "eval_rewards/margins", "eval_loss")
ENTRY = '''"""Hugging Face Space entry: the DPO Lab side-by-side demo configured by space_config.json."""

from pathlib import Path

from dpo_demo.app import main

if __name__ == "__main__":
    main(default_config=Path(__file__).resolve().parent / "space_config.json")
'''


@dataclass
class SpaceExport:
    """What `export_space` wrote."""

    out_dir: str
    run_id: str
    base: str
    files: list[str] = field(default_factory=list)
    note: str = ""  # what running it needs beyond the folder (the hub, for a hub base)

    def to_dict(self) -> dict:
        return {"out_dir": self.out_dir, "run_id": self.run_id, "base": self.base,
                "files": self.files, "note": self.note}


def export_space(store_or_workspace: Store | Workspace | None, run_id: str, out_dir: str | Path,
                 *, base: str | None = None, copy_base: bool | None = None,
                 adapter_hub_id: str | None = None, title: str | None = None,
                 license: str = "apache-2.0", limits: Limits | None = None,
                 examples: int = 5, overwrite: bool = False) -> SpaceExport:
    """Write a Space folder for a completed run. `base` overrides where the Space gets the base.

    By default a `builtin:tiny` or local-folder base is copied in, and the default builtin base
    becomes its hub id (the Space downloads it); `copy_base=True` always copies.
    """
    require_owner("export Spaces")
    store, ws = _store_and_workspace(store_or_workspace)
    run = _completed_run(store, run_id)
    final = Path(run["run_dir"] or ws.runs / run["id"]) / "final"
    info = _final_info(final)
    out = Path(out_dir).expanduser().resolve()
    _check_target(out, ws, overwrite)
    work = out.with_name(out.name + ".part")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        base_ref = _place_base(base or info["base"], ws, work, copy_base)
        config = _demo_config(store, run, final, info, base_ref, adapter_hub_id, work,
                              title, license, limits or Limits(), examples)
        write_config(config, work)
        _write_package(work)
        (work / "README.md").write_text(space_readme(config), encoding="utf-8")
        (work / "requirements.txt").write_text(requirements(), encoding="utf-8")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.replace(work, out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return SpaceExport(str(out), run["id"], base_ref, files,
                       _hub_base_note(base_ref, base or info["base"], ws))


def _store_and_workspace(value) -> tuple[Store, Workspace]:
    if isinstance(value, Store):
        return value, get_workspace(Path(value.path).resolve().parent)
    ws = value if isinstance(value, Workspace) else get_workspace()
    return open_store(ws.db_path), ws


def _completed_run(store: Store, run_id: str) -> dict:
    row = find_row(store, run_id, "run")
    if row["kind"] == "external":
        raise ConfigError(f"Run '{row['id']}' is an imported training log: it has metrics but "
                          "no model to publish.", "Export a run trained in this lab.")
    if row["status"] != "completed":
        raise ConfigError(f"Run '{row['id']}' is {row['status']}, not completed.",
                          "Export a completed run (its final/ folder holds the model).")
    return dict(row)


def _final_info(final: Path) -> dict:
    f = final / RUN_MODEL_FILE
    if not f.is_file():
        raise ModelError(f"The run's final folder {final} has no {RUN_MODEL_FILE}.",
                         "Export a run that finished training (final/ is written last).")
    info = json.loads(f.read_text())
    if info.get("kind") not in ("lora", "full") or not info.get("base"):
        raise ModelError(f"{f} does not name a base and a kind (lora|full): {info}.",
                         "Re-run training, or fix the file by hand.")
    return info


def _check_target(out: Path, ws: Workspace, overwrite: bool) -> None:
    home = ws.home.resolve()
    if out == home or home in out.parents and out.parent != ws.exports:
        raise ConfigError(f"--out {out} is inside the workspace.",
                          f"Pick a folder outside it, or under {ws.exports}.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"The folder {out} exists and is not empty.",
                          "Pick a new folder, or pass --force to replace it.")


def _place_base(spec: str, ws: Workspace, work: Path, copy_base: bool | None) -> str:
    """The base as the Space config names it: a copied folder ('base') or a hub id."""
    if spec in HUB_IDS and not copy_base:
        return HUB_IDS[spec]
    folder = Path(spec).expanduser()
    is_local = spec.startswith("builtin:") or spec == TINY_SPEC or folder.is_dir()
    if not is_local or copy_base is False:
        return spec  # a hub id (or the caller wants the reference kept as is)
    _copy_model(Path(resolve_path(spec, ws)), work / "base")
    return "base"


def _hub_base_note(base_ref: str, spec: str, ws: Workspace) -> str:
    """How to run a Space offline whose base comes from the hub ('' when it is in the folder)."""
    if base_ref == "base":
        return ""
    local = builtin_dir(DEFAULT_SPEC.removeprefix("builtin:"), ws) if spec in HUB_IDS else None
    offline = (f"{BASE_ENV}={local} python app.py" if local is not None and local.is_dir()
               else f"{BASE_ENV}=<a local copy of {base_ref}> python app.py")
    return (f"The Space loads its base model {base_ref} from the Hugging Face hub, which needs "
            f"network. Offline, run it with `{offline}`, or export with --copy-base to put the "
            "base in the folder.")


def _point_adapter_at(folder: Path, base_ref: str) -> None:
    """Name the Space's base in a copied adapter config, not a folder on the exporting machine."""
    f = folder / "adapter_config.json"
    if f.is_file():
        data = json.loads(f.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = base_ref
        f.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _copy_model(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    copied = 0
    for item in sorted(src.iterdir()):
        if item.is_file() and not item.is_symlink() and MODEL_FILES.match(item.name) \
                and item.name not in (RUN_MODEL_FILE, "READY.json"):
            shutil.copyfile(item, dest / item.name)
            copied += 1
    if not copied:
        raise ModelError(f"No model files found in {src}.", "Check the run's final/ folder.")


def _demo_config(store, run, final, info, base_ref, adapter_hub_id, work, title, license,
                 limits, examples) -> DemoConfig:
    fmt_file = final / FORMAT_FILE
    prompt_format = json.loads(fmt_file.read_text()) if fmt_file.is_file() else {"kind": "chat"}
    tuned_ref = adapter_hub_id or ("adapter" if info["kind"] == "lora" else "model")
    if not adapter_hub_id:
        _copy_model(final, work / tuned_ref)
        _point_adapter_at(work / tuned_ref, base_ref)
    summary = run_summary(store, run, info)
    return DemoConfig(
        baseline_note=baseline_note(info["base"], base_ref),
        base=base_ref, kind=info["kind"],
        adapter=tuned_ref if info["kind"] == "lora" else "",
        tuned=tuned_ref if info["kind"] == "full" else "",
        prompt_format=prompt_format, title=title or f"DPO Lab: {run['name'] or run['id']}",
        description="Baseline and DPO fine-tuned model side by side.",
        run=summary, examples=eval_prompts(store, Path(run["run_dir"] or final.parent),
                                           examples, limits.max_prompt_chars),
        limits=limits, license=license)


def baseline_note(run_base: str, base_ref: str) -> str:
    """What a visitor must know when the Space's baseline is not the base the lab trained and
    evaluated on ('' when the base's own weights are in the folder)."""
    if base_ref == "base":
        return ""
    if run_base in HUB_IDS and base_ref == HUB_IDS[run_base]:
        return (f"this Space loads {base_ref} from the Hugging Face hub. The run was trained and "
                f"evaluated on the lab's {run_base}, made from the dequantized GGUF of "
                f"{SMOLLM2_PACKAGE}, whose weights differ slightly: the baseline here is not the "
                "model the lab's numbers were measured on, and the fine-tuned side applies the "
                "run's adapter to this base. Export with --copy-base to ship the evaluated base.")
    if base_ref != run_base:
        return (f"this Space's baseline is {base_ref}; the run was trained and evaluated on "
                f"{run_base}, so the lab's numbers were not measured on this baseline.")
    return ""


def run_summary(store: Store, run: dict, info: dict) -> dict:
    """Run id, base, dataset, method, and every number the page shows with its n: the last
    evaluation of training (n = eval pairs) and the lab's stored evaluations of the run and of
    its base on the same benchmarks."""
    cfg = json.loads(run.get("config_json") or "{}")
    method = cfg.get("method", info["kind"])
    loss = cfg.get("loss_type")
    eval_pairs = _line_count(Path(run.get("run_dir") or "") / "pairs.eval.jsonl")
    results = [{"metric": f"{k} (training's eval split)", "value": round(float(v), 4),
                "n": eval_pairs}
               for k, v in last_values(store, run["id"], KEY_METRICS).items()]
    results += lab_results(store, f"run:{run['id']}", info["base"])
    return {"id": run["id"], "base": info["base"], "dataset": cfg.get("dataset", ""),
            "method": f"DPO ({method}{', ' + loss if loss else ''}"
                      f"{', beta ' + str(cfg['beta']) if 'beta' in cfg else ''})",
            "results": results}


def lab_results(store: Store, run_spec: str, base_spec: str) -> list[dict]:
    """The newest lab evaluation of the run per benchmark and method, and of its base on the
    same ones: accuracy with its 95% interval, n and the scoring protocol."""
    newest: dict[tuple, dict] = {}
    for e in list_evals(store):  # newest first
        if e["model"] in (run_spec, base_spec) and e.get("accuracy") is not None:
            newest.setdefault((e["model"], e["benchmark"], e["method"]), e)
    rows = []
    for (model, bench, method), e in sorted(newest.items(), key=lambda kv: (
            kv[0][1], kv[0][2], kv[0][0] != run_spec)):
        if model != run_spec and (run_spec, bench, method) not in newest:
            continue
        who = "fine-tuned" if model == run_spec else "baseline"
        interval = (f" [{e['ci_low']:.1%}, {e['ci_high']:.1%}]"
                    if e.get("ci_low") is not None else "")
        rows.append({"metric": f"{bench} · {method} accuracy, {who} ({e['protocol']})",
                     "value": f"{e['accuracy']:.1%}{interval}", "n": e.get("n")})
    return rows


def _line_count(path: Path) -> int | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def eval_prompts(store: Store, run_dir: Path, limit: int, max_chars: int) -> list[str]:
    """Up to `limit` raw prompts of the run's eval split (rendered ones are looked up by pair id)."""
    path = run_dir / "pairs.eval.jsonl"
    if not path.is_file() or limit <= 0:
        return []
    prompts: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if len(prompts) >= limit:
            break
        row = json.loads(line) if line.strip() else {}
        text = _raw_prompt(store, row)
        if text and text not in prompts and len(text) <= max_chars:
            prompts.append(text)
    return prompts


def _raw_prompt(store: Store, row: dict) -> str:
    if row.get("pair_id") is not None:
        found = pair_texts(store, [row["pair_id"]]).get(row["pair_id"])
        if found is not None:
            return _last_user_text(found["prompt"])
    text = str(row.get("prompt") or "")
    return "" if "<|" in text else text.strip()


def _last_user_text(prompt: str) -> str:
    """A stored prompt as a visitor would type it (a message list gives its last user turn)."""
    if prompt.lstrip().startswith("[{"):
        try:
            users = [m["content"] for m in json.loads(prompt) if m.get("role") == "user"]
            return users[-1].strip() if users else ""
        except (ValueError, KeyError, TypeError, AttributeError):
            return ""
    return prompt.strip()


def _write_package(work: Path) -> None:
    here = Path(demo.__file__).resolve().parent
    pkg = work / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""DPO Lab demo, copied from dpo_core/demo by export-space."""\n')
    for name in DEMO_MODULES:
        shutil.copyfile(here / name, pkg / name)
    (work / "app.py").write_text(ENTRY, encoding="utf-8")


def pinned_version(package: str) -> str:
    """The installed version without a local build tag (torch 2.13.0+cpu -> 2.13.0)."""
    return importlib.metadata.version(package).split("+", 1)[0]


def requirements() -> str:
    return "".join(f"{name}=={pinned_version(name)}\n" for name in PINNED)


def space_readme(config: DemoConfig) -> str:
    """README.md with the Spaces YAML header (sdk_version = the gradio this lab runs)."""
    title = config.title.replace('"', "'")[:60]
    run = config.run or {}
    header = "\n".join(["---", f'title: "{title}"', "emoji: ⚖️", "colorFrom: indigo",
                        "colorTo: green", "sdk: gradio", f"sdk_version: {pinned_version('gradio')}",
                        "app_file: app.py", "pinned: false", f"license: {config.license}",
                        "short_description: Baseline vs DPO fine-tuned, side by side", "---"])
    note = f"\n**About the baseline:** {config.baseline_note}\n" if config.baseline_note else ""
    measured = "".join(f"| {r['metric']} | {r['value']} | {r.get('n') or 'not recorded'} |\n"
                       for r in run.get("results") or [])
    table = f"\n| Measured | value | n |\n|---|---|---|\n{measured}" if measured else ""
    body = f"""
# {config.title}

Exported by DPO Lab from run `{run.get('id', '')}` (base `{run.get('base', '')}`,
dataset `{run.get('dataset', '')}`, {run.get('method', '')}).
{table}{note}
Run locally: `pip install -r requirements.txt && python app.py` (http://127.0.0.1:7860).
Settings and limits are in `{CONFIG_FILE}`. The base model is `{config.base}`; to load it from
elsewhere (a local copy, to run offline), set `{BASE_ENV}=FOLDER_OR_HUB_ID`.

Votes are written as JSON Lines to `/data` when the Space has persistent storage, else next to
`app.py`: `votes.jsonl` holds one preference pair per line (prompt, chosen, rejected, verdict,
models, settings, at); ties and both-bad votes go to `votes-unranked.jsonl`. Visitors' votes are
not reviewed: import them with `python -m dpo_core import-space-votes votes.jsonl --dataset NAME`,
which flags every pair `unreviewed`, and review them before training on them. The Space refuses
a preference between identical answers, a second vote on the same answers, more than
{config.limits.votes_per_minute} votes a minute from one visitor or session, and every vote once
a file holds {config.limits.max_votes} lines.
"""
    return header + "\n" + body


def push_space(out_dir: str | Path, repo_id: str, token: str | None = None,
               private: bool = False) -> str:
    """Create (or reuse) a gradio Space and upload the folder; returns the Space URL."""
    require_owner("export Spaces")
    from huggingface_hub import HfApi, get_token

    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise ConfigError("No Hugging Face token to push the Space with.",
                          "Set HF_TOKEN (a write token) or run `hf auth login`.")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ConfigError("HF_HUB_OFFLINE=1 is set, so nothing can be pushed.",
                          "Unset HF_HUB_OFFLINE on a machine with network access.")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True,
                        private=private)
        api.upload_folder(folder_path=str(out_dir), repo_id=repo_id, repo_type="space",
                          ignore_patterns=["votes*.jsonl", "*.part"])
    except Exception as exc:  # network, auth and hub errors all end the same way for the user
        raise DPOLabError(f"Could not push to the Space '{repo_id}': "
                          f"{type(exc).__name__}: {str(exc)[:200]}",
                          "Check the network, the token's write access and the repo id "
                          "(user/name).") from exc
    return f"https://huggingface.co/spaces/{repo_id}"
