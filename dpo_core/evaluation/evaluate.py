"""Evaluate a model spec on stored pairs, a suite folder or a pairs file, and store the result."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..data.datasets import get_dataset, iter_pairs
from ..errors import ConfigError, DataError
from ..formats import PromptFormat
from ..models import resolve_model
from ..store import Store, dumps
from ..training.runs import get_run, run_spec
from .results import save_eval
from .scoring import Method, Progress, Scope, check_method, no_progress, pair_accuracy
from .suites import (
    CONCAT_FORMAT,
    hellaswag_choices,
    multiple_choice_accuracy,
    read_pairs_json,
    suite_accuracy,
)


def run_beta(store: Store, model_spec: str, default: float = 0.1) -> float:
    """The DPO beta the run of a `run:<id or unique prefix>` spec trained with, else `default`."""
    if not model_spec.startswith("run:"):
        return default
    beta = get_run(store, model_spec[4:])["config"].get("beta")
    return default if beta is None else float(beta)


def _reference_for(loaded, workspace=None):
    """None for adapters (disable the adapter); the base model for full-weight runs."""
    if loaded.is_adapter:
        return None
    if not loaded.base_spec:
        raise ConfigError(f"implicit-reward needs a fine-tuned run; '{loaded.spec}' has no "
                          "reference model.", "Use --model run:<id>, or mean-logp/sum-logp.")
    return resolve_model(loaded.base_spec, workspace).model


def run_evaluation(store: Store, model_spec: str, dataset: str | int, split: str | None = "eval",
                   methods: Sequence[str] = ("mean-logp",), scope: Scope = "reply",
                   limit: int | None = None, batch_size: int = 16, beta: float | None = None,
                   seed: int = 0, loaded=None, job_id: str | None = None, workspace=None,
                   progress: Progress = no_progress) -> list[dict]:
    """Evaluate a model on a dataset split with each method; store and return the summaries."""
    model_spec = run_spec(store, model_spec)
    for method in methods:
        check_method(method, scope)
    ds = get_dataset(store, dataset)
    pairs = list(iter_pairs(store, ds.id, split or None))[:limit] if limit \
        else list(iter_pairs(store, ds.id, split or None))
    if not pairs:
        raise DataError(f"Dataset '{ds.name}' has no pairs in split '{split}'.",
                        "Pick another split (e.g. train), or split the dataset first.")
    progress(0.0, f"Loading {model_spec} ...")
    loaded = loaded or resolve_model(model_spec, workspace)
    fmt = PromptFormat.from_dict(ds.prompt_format) if ds.prompt_format else loaded.prompt_format
    summaries = []
    for k, method in enumerate(methods):
        step = lambda f, m, k=k, name=method: progress(  # noqa: E731
            (k + f) / len(methods), f"{name}: {m}")
        extra = {}
        if method == "implicit-reward":
            b = beta if beta is not None else run_beta(store, model_spec)
            result = pair_accuracy(loaded.model, loaded.tokenizer, fmt, pairs, method, "reply",
                                   batch_size, b, _reference_for(loaded, workspace), seed,
                                   progress=step)
            extra["beta"] = b
        else:
            result = pair_accuracy(loaded.model, loaded.tokenizer, fmt, pairs, method, scope,
                                   batch_size, seed=seed, progress=step)
        metrics = {k2: result[k2] for k2 in ("accuracy", "ci_low", "ci_high", "mean_margin", "n",
                                             "scope")} | extra | {"dataset": ds.name}
        rows = ((p.id, "", r["chosen_score"], r["rejected_score"], int(r["correct"]),
                 dumps({"margin": r["margin"]}))
                for p, r in zip(pairs, result["per_pair"], strict=True))
        eval_id = save_eval(store, model_spec, ds.id, split or "", method, metrics, rows, job_id)
        summaries.append({"eval_id": eval_id, "model": model_spec, "method": method,
                          "split": split or "", **metrics})
    progress(1.0, "Evaluation finished.")
    return summaries


def run_suite_evaluation(store: Store, model_spec: str, folder: str | Path,
                         method: Method = "mean-logp", limit: int | None = None,
                         batch_size: int = 16, seed: int = 0, loaded=None,
                         job_id: str | None = None, workspace=None,
                         progress: Progress = no_progress) -> dict:
    """Evaluate a BLiMP-layout folder; store one eval (per-file accuracies in its metrics)."""
    model_spec = run_spec(store, model_spec)
    loaded = loaded or resolve_model(model_spec, workspace)
    result = suite_accuracy(loaded.model, loaded.tokenizer, folder, method, batch_size, limit,
                            seed, progress)
    metrics = {k: result[k] for k in ("accuracy", "ci_low", "ci_high", "mean_margin", "n",
                                      "scope", "files")} | {"suite": str(folder)}
    rows = ((None, r["item"], r["chosen_score"], r["rejected_score"], int(r["correct"]),
             dumps({"margin": r["margin"]})) for r in result["per_pair"])
    eval_id = save_eval(store, model_spec, None, Path(folder).name, f"suite:{method}", metrics,
                         rows, job_id)
    return {"eval_id": eval_id, "model": model_spec, "method": f"suite:{method}", **metrics}


def run_file_evaluation(store: Store, model_spec: str, path: str | Path,
                        as_choices: bool = False, method: Method = "mean-logp",
                        limit: int | None = None, batch_size: int = 16, seed: int = 0,
                        loaded=None, job_id: str | None = None, workspace=None,
                        progress: Progress = no_progress) -> dict:
    """Evaluate a TRL JSON file (e.g. HellaSwag noise) as pairs or as multiple choice; store it."""
    model_spec = run_spec(store, model_spec)
    check_method(method, "reply")
    if method == "implicit-reward":
        raise ConfigError("File evaluation takes mean-logp or sum-logp.",
                          "Import the file as a dataset to use implicit-reward.")
    records = read_pairs_json(path)[:limit] if limit else read_pairs_json(path)
    loaded = loaded or resolve_model(model_spec, workspace)
    model, tok = loaded.model, loaded.tokenizer
    if as_choices:
        items = hellaswag_choices(records)
        result = multiple_choice_accuracy(model, tok, PromptFormat(), items, method, "reply",
                                          batch_size, seed, progress)
        rows = ((None, str(r["index"]), r["scores"][r["answer"]],
                 max((v for k, v in enumerate(r["scores"]) if k != r["answer"]), default=None),
                 int(r["correct"]), dumps(r)) for r in result["per_item"])
        result["mean_margin"] = 0.0
    else:
        result = pair_accuracy(model, tok, CONCAT_FORMAT, records, method, "reply", batch_size,
                               seed=seed, progress=progress)
        rows = ((None, str(r["index"]), r["chosen_score"], r["rejected_score"],
                 int(r["correct"]), dumps({"margin": r["margin"]})) for r in result["per_pair"])
    kind = "choices" if as_choices else "pairs"
    metrics = {k: result[k] for k in ("accuracy", "ci_low", "ci_high", "mean_margin", "n",
                                      "scope")} | {"suite": str(path)}
    eval_id = save_eval(store, model_spec, None, Path(path).name, f"{kind}:{method}", metrics,
                         rows, job_id)
    return {"eval_id": eval_id, "model": model_spec, "method": f"{kind}:{method}", **metrics}


def save_win_rate(store: Store, tuned_spec: str, baseline_spec: str, result: dict,
                  job_id: str | None = None) -> int:
    """Store a win-rate result: every generation and verdict as an eval_results row."""
    tuned_spec, baseline_spec = run_spec(store, tuned_spec), run_spec(store, baseline_spec)
    metrics = {k: result[k] for k in ("wins", "ties", "losses", "n", "win_rate", "ci_low",
                                      "ci_high", "judge", "settings", "seed")}
    metrics |= {"baseline": baseline_spec, "accuracy": result["win_rate"]}
    rows = ((None, r["prompt"], r.get("score_a"), r.get("score_b"), int(r["verdict"] == "a"),
             dumps(r)) for r in result["rows"])
    return save_eval(store, tuned_spec, None, "", f"win-rate:{result['judge']}", metrics, rows,
                      job_id)
