"""Evaluation as a background job (kind 'eval'): several models, pair methods, a BLiMP-layout
suite, a pairs/multiple-choice JSON file and a generation win rate, with progress; every stored
eval row carries the job id.

The first model is the baseline; the win rate compares each other model against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..access import require_owner
from ..data.datasets import get_dataset
from ..errors import ConfigError, DataError
from ..jobs.lifecycle import start_job
from ..models import resolve_model
from ..store import Store
from .evaluate import run_evaluation, run_file_evaluation, run_suite_evaluation, run_win_rate
from .judges import JUDGES, NEEDS_MODEL, check_judge_template
from .scoring import METHODS, SCOPES
from .suites import DEFAULT_SUITE_METHOD, DEFAULT_SUITE_PROTOCOL, check_protocol

KIND = "eval"
TARGET = "dpo_core.evaluation.job:evaluation_job"
UNIT = 100  # progress steps per unit of work (one model x one method)
FILE_KINDS = ("pairs", "choices")  # score a JSON file as pairs, or as multiple choice


def _check_config(store: Store, cfg: dict) -> None:
    if not cfg["models"]:
        raise ConfigError("No model to evaluate.", "Choose a baseline model and at least one run.")
    bad = [m for m in cfg["methods"] if m not in METHODS]
    if bad:
        raise ConfigError(f"Unknown method(s): {', '.join(bad)}.", f"Use {', '.join(METHODS)}.")
    if cfg["scope"] not in SCOPES:
        raise ConfigError(f"Unknown scope '{cfg['scope']}'.", "Use 'reply' or 'full'.")
    if (cfg["methods"] or cfg["win_rate"]) and not cfg["dataset"]:
        raise ConfigError("Pair methods and the win rate need a dataset.",
                          "Pick a dataset and split, or only a suite folder.")
    if cfg["dataset"]:
        get_dataset(store, cfg["dataset"])  # NotFoundError names it
    if cfg["win_rate"] and len(cfg["models"]) < 2:
        raise ConfigError("A win rate compares a tuned model with the baseline.",
                          "Add a run (run:<id>) besides the baseline.")
    if not (cfg["methods"] or cfg["suite"] or cfg["pairs_file"] or cfg["win_rate"]):
        raise ConfigError("Nothing to evaluate.",
                          "Pick a method, a suite folder, a pairs file or the win rate.")
    _check_file(cfg)
    _check_suite(cfg)
    _check_judge(cfg["win_rate"])


def _check_suite(cfg: dict) -> None:
    if not cfg["suite"]:
        return
    if cfg["suite_method"] not in ("mean-logp", "sum-logp"):
        raise ConfigError(f"A suite is scored with mean-logp or sum-logp, not "
                          f"'{cfg['suite_method']}'.", "implicit-reward needs pairs with a "
                          "prompt; pick sum-logp (lm-evaluation-harness's BLiMP accuracy).")
    check_protocol(cfg["suite_protocol"])


def _check_file(cfg: dict) -> None:
    if not cfg["pairs_file"]:
        return
    if not Path(cfg["pairs_file"]).expanduser().is_file():
        raise DataError(f"No pairs file at {cfg['pairs_file']}.",
                        "Give the path of a JSON list of {prompt, chosen, rejected} objects, "
                        "e.g. ../shared/data/hellaswag-noise/val-1.json.")
    if not cfg["file_as"] or any(k not in FILE_KINDS for k in cfg["file_as"]):
        raise ConfigError(f"Cannot score the file as {cfg['file_as']}.",
                          "Score it as 'pairs', 'choices' or both.")
    if cfg["file_method"] not in ("mean-logp", "sum-logp"):
        raise ConfigError(f"File evaluation takes mean-logp or sum-logp, not "
                          f"'{cfg['file_method']}'.", "Import the file as a dataset for "
                          "implicit-reward.")


def _check_judge(win: dict | None) -> None:
    if not win:
        return
    kind = win.get("judge", "lexicon")
    if kind not in JUDGES:
        raise ConfigError(f"Unknown judge '{kind}'.", f"Use {', '.join(JUDGES)}.")
    if kind != "lexicon" and not (win.get("judge_model") or "").strip():
        raise ConfigError(f"The {kind} judge needs a model spec.", NEEDS_MODEL)
    template = win.get("judge_template")
    if kind == "llm" and template:
        check_judge_template(template)
    for key in ("prompts", "samples", "max_new_tokens"):
        value = win.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"win_rate.{key} is {value!r}.", f"Use a whole number of {key} "
                              "of at least 1.")


def evaluation_config(models: Sequence[str], dataset: str | int | None = None,
                      split: str | None = "eval", methods: Sequence[str] = ("mean-logp",),
                      scope: str = "reply", limit: int | None = None, batch_size: int = 16,
                      suite: str | None = None, suite_limit: int | None = None,
                      win_rate: dict | None = None, seed: int = 0,
                      pairs_file: str | None = None, file_as: Sequence[str] = ("pairs",),
                      file_method: str = "mean-logp", file_limit: int | None = None,
                      suite_method: str = DEFAULT_SUITE_METHOD,
                      suite_protocol: str = DEFAULT_SUITE_PROTOCOL) -> dict:
    """The job's frozen config. win_rate: {"judge": "lexicon" | "reward-model" | "llm",
    "judge_model": SPEC, "judge_template": PROMPT, "prompts": 8, "samples": 1,
    "max_new_tokens": 24}; pairs_file: a TRL JSON file scored `file_as` pairs and/or choices
    (HellaSwag layout); a suite is scored with `suite_method` under `suite_protocol`."""
    return {"models": list(dict.fromkeys(m.strip() for m in models if m and m.strip())),
            "dataset": dataset, "split": split or None, "methods": list(methods), "scope": scope,
            "limit": limit or None, "batch_size": int(batch_size), "suite": suite or None,
            "suite_limit": suite_limit or None, "win_rate": win_rate or None, "seed": int(seed),
            "pairs_file": str(pairs_file).strip() if pairs_file and str(pairs_file).strip()
            else None, "file_as": list(dict.fromkeys(file_as)), "file_method": file_method,
            "file_limit": file_limit or None, "suite_method": suite_method,
            "suite_protocol": suite_protocol}


def start_evaluation(store: Store, models: Sequence[str], dataset: str | int | None = None,
                     split: str | None = "eval", methods: Sequence[str] = ("mean-logp",),
                     **options) -> str:
    """Validate and start an evaluation job; returns the job id (its evals carry it)."""
    require_owner("start runs and jobs")
    cfg = evaluation_config(models, dataset, split, methods, **options)
    _check_config(store, cfg)
    name = "eval " + " vs ".join(cfg["models"])
    return start_job(store, KIND, cfg, TARGET, name=name[:120])




def _units(cfg: dict) -> list[tuple[str, str]]:
    """(kind, model) work units in order: pair methods, suite and file per model, then win
    rates."""
    units = []
    for model in cfg["models"]:
        units += [("pairs", model)] * bool(cfg["methods"]) + [("suite", model)] * bool(cfg["suite"])
        units += [("file", model)] * bool(cfg.get("pairs_file"))
    units += [("win-rate", m) for m in cfg["models"][1:]] if cfg["win_rate"] else []
    return units


def _pair_methods(model: str, methods: list[str]) -> tuple[list[str], list[str]]:
    """(methods to run, methods skipped): implicit-reward needs a fine-tuned run."""
    if model.startswith("run:"):
        return methods, []
    return [m for m in methods if m != "implicit-reward"], \
        [m for m in methods if m == "implicit-reward"]


def evaluation_job(config: dict, ctx) -> dict:
    """Job target: run every unit, saving each eval as it finishes; stop between units."""
    store, units = ctx.store, _units(config)
    total, eval_ids, skipped, cache = len(units) * UNIT, [], [], {}

    def load(spec: str):
        if spec not in cache:
            cache.clear()  # keep at most one model besides the baseline in memory
            cache[spec] = resolve_model(spec)
        return cache[spec]

    for k, (kind, model) in enumerate(units):
        if ctx.cancelled():
            break

        def step(fraction: float, message: str, k=k, model=model) -> None:
            ctx.progress(k * UNIT + int(fraction * UNIT), total, message=f"{model}: {message}")

        step(0.0, f"starting {kind}")
        if kind == "pairs":
            methods, skip = _pair_methods(model, config["methods"])
            skipped += [f"{m} for {model} (not a run)" for m in skip]
            if methods:
                eval_ids += [s["eval_id"] for s in run_evaluation(
                    store, model, config["dataset"], config["split"], methods, config["scope"],
                    config["limit"], config["batch_size"], seed=config["seed"],
                    loaded=load(model), job_id=ctx.job_id, progress=step)]
        elif kind == "suite":
            eval_ids.append(run_suite_evaluation(
                store, model, config["suite"], config.get("suite_method", "mean-logp"),
                config["suite_limit"], config["batch_size"], config["seed"], loaded=load(model),
                job_id=ctx.job_id, progress=step,
                protocol=config.get("suite_protocol", "after-first-token"))["eval_id"])
        elif kind == "file":
            eval_ids += _file_unit(store, config, model, load(model), ctx.job_id, step)
        else:
            eval_ids.append(_win_rate_unit(store, config, model, ctx.job_id, step))
        ctx.progress((k + 1) * UNIT, total, eval_ids=eval_ids, skipped=skipped,
                     message=f"{model}: {kind} done")
    return {"eval_ids": eval_ids, "skipped": skipped}


def _file_unit(store: Store, config: dict, model: str, loaded, job_id: str, step) -> list[int]:
    """The pairs file scored as pairs and/or as multiple choice: one eval per way."""
    kinds, ids = config["file_as"], []
    for k, kind in enumerate(kinds):
        part = lambda f, m, k=k, kind=kind: step((k + f) / len(kinds), f"{kind}: {m}")  # noqa: E731
        ids.append(run_file_evaluation(
            store, model, Path(config["pairs_file"]).expanduser(), kind == "choices",
            config["file_method"], config["file_limit"], config["batch_size"], config["seed"],
            loaded=loaded, job_id=job_id, progress=part)["eval_id"])
    return ids


def _win_rate_unit(store: Store, config: dict, tuned_spec: str, job_id: str, step) -> int:
    wr = config["win_rate"]
    kind = wr.get("judge", "lexicon")
    judge = kind if kind == "lexicon" else f"{kind}:{wr.get('judge_model', '')}"
    return run_win_rate(store, tuned_spec, config["models"][0], config["dataset"],
                        config["split"], judge, prompts=int(wr.get("prompts", 8)),
                        samples=int(wr.get("samples", 1)),
                        max_new_tokens=int(wr.get("max_new_tokens", 32)),
                        judge_template=wr.get("judge_template") or None, seed=config["seed"],
                        job_id=job_id, progress=step)["eval_id"]
