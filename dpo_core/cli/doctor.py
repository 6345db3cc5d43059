"""`prepare-model` (make a builtin model ready offline) and `doctor` (is this machine ready)."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sys
import time

from ..data.datasets import dataset_names
from ..device import detect_device
from ..jobs.runner import run_here
from ..models import DEFAULT_SPEC, TINY_SPEC, model_state, resolve_path
from ..startup import PREPARE_KIND, PREPARE_TARGET
from ..store import open_store
from ..workspace import get_workspace
from .output import print_json

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "streamlit",
            "gradio", "pandas", "plotly", "gguf")


def register(sub) -> None:
    p = sub.add_parser("prepare-model", help="make a builtin model ready offline",
                       description="Prepare a builtin model (default: the offline default, "
                                   f"{DEFAULT_SPEC}) in the workspace's models/ folder.")
    p.add_argument("spec", nargs="?", default=DEFAULT_SPEC,
                   help=f"{DEFAULT_SPEC} (default) or {TINY_SPEC}")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--report", action="store_true",
                   help="record it as a job (kind prepare): Home and `jobs list` show it")
    p.set_defaults(func=cmd_prepare_model)

    d = sub.add_parser("doctor", help="versions, device, workspace and model readiness",
                       description="Check that this machine can run DPO Lab. Exits 0 when "
                                   "ready, 1 when something is missing (listed).")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=cmd_doctor)


def cmd_prepare_model(args) -> int:
    start = time.time()
    if args.report:  # recorded as a job: Home and `jobs list` show its progress
        job = run_here(open_store(), PREPARE_KIND, {"spec": args.spec}, PREPARE_TARGET,
                       name=f"prepare {args.spec}")
        path = job["result"]["path"]
    else:
        path = resolve_path(args.spec, progress=lambda fraction, message: None if args.json
                            else print(f"[{fraction:4.0%}] {message}", file=sys.stderr,
                                       flush=True))
    result = {"spec": args.spec, "path": path, "seconds": round(time.time() - start, 1)}
    if args.json:
        print_json(result)
    else:
        print(f"{args.spec} is ready at {path}")
    return 0


def find_chromium() -> str | None:
    """A Chrome/Chromium binary for the browser tests, if one is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def doctor_report() -> dict:
    """Everything `doctor` checks, as a dict."""
    ws = get_workspace()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    store = open_store(ws.db_path)
    datasets = len(dataset_names(store))
    state = model_state(DEFAULT_SPEC, ws)
    chromium = find_chromium()
    report = {
        "python": platform.python_version(),
        "packages": versions,
        "device": detect_device().to_dict(),
        "workspace": {"home": str(ws.home), "db": str(ws.db_path), "migration": store.version,
                      "datasets": datasets},
        "default_model": {k: state.get(k) for k in ("spec", "ready", "path", "fingerprint")},
        "chromium": chromium,
    }
    missing = [k for k, v in versions.items() if v is None]
    report["ready"] = bool(state["ready"] and not missing and datasets)
    report["problems"] = (
        [f"missing package {m}: pip install -r requirements.txt" for m in missing]
        + ([] if state["ready"] else ["default model not prepared: python -m dpo_core "
                                       "prepare-model (the app also does it on first start)"])
        + ([] if datasets else ["no datasets yet: start the app once, or `python -m dpo_core "
                                "data import`"])
    )
    return report


def cmd_doctor(args) -> int:
    report = doctor_report()
    if args.json:
        print_json(report)
        return 0 if report["ready"] else 1
    dev = report["device"]
    print(f"Python        {report['python']}")
    for name, version in report["packages"].items():
        print(f"  {name:<12} {version or 'MISSING'}")
    print(f"Device        {dev['kind']}: {dev['name']} · {dev['memory_gb']:.0f} GB · "
          f"{dev['precision']}")
    ws = report["workspace"]
    print(f"Workspace     {ws['home']} (migration {ws['migration']}, {ws['datasets']} datasets)")
    dm = report["default_model"]
    print(f"Default model {dm['spec']}: {'ready' if dm['ready'] else 'NOT prepared'}")
    print(f"Chromium      {report['chromium'] or 'not found (needed for browser tests only)'}")
    for problem in report["problems"]:
        print(f"! {problem}")
    print("Ready." if report["ready"] else "Not ready yet.")
    return 0 if report["ready"] else 1  # scripts can wait on it


