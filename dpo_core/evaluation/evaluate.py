"""Evaluate a model spec on stored pairs, a suite folder or a pairs file, and store the result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..data.datasets import get_dataset, iter_pairs
from ..errors import ConfigError, DataError
from ..formats import PromptFormat
from ..models import resolve_model
from ..store import Store, dumps
from ..training.runs import get_run, run_spec
from .judges import check_judge_template, make_judge, parse_judge
from .results import save_eval
from .scoring import (
    Method,
    Progress,
    Scope,
    check_method,
    no_progress,
    pair_accuracy,
    pair_protocol,
)
from .suites import (
    CONCAT_FORMAT,
    DEFAULT_SUITE_METHOD,
    DEFAULT_SUITE_PROTOCOL,
    check_protocol,
    hellaswag_choices,
    multiple_choice_accuracy,
    read_pairs_json,
    suite_accuracy,
)
from .win_rate import WIN_RATE_SAMPLING, win_rate


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
        metrics["protocol"] = pair_protocol(method, metrics["scope"])
        rows = ((p.id, "", r["chosen_score"], r["rejected_score"], int(r["correct"]),
                 dumps({"margin": r["margin"]}))
                for p, r in zip(pairs, result["per_pair"], strict=True))
        eval_id = save_eval(store, model_spec, ds.id, split or "", method, metrics, rows, job_id)
        summaries.append({"eval_id": eval_id, "model": model_spec, "method": method,
                          "split": split or "", **metrics})
    progress(1.0, "Evaluation finished.")
    return summaries


def run_suite_evaluation(store: Store, model_spec: str, folder: str | Path,
                         method: Method = DEFAULT_SUITE_METHOD, limit: int | None = None,
                         batch_size: int = 16, seed: int = 0, loaded=None,
                         job_id: str | None = None, workspace=None,
                         progress: Progress = no_progress,
                         protocol: str = DEFAULT_SUITE_PROTOCOL) -> dict:
    """Evaluate a BLiMP-layout folder; store one eval (per-file accuracies and the scoring
    protocol in its metrics, one row per sentence pair)."""
    model_spec = run_spec(store, model_spec)
    check_protocol(protocol)
    loaded = loaded or resolve_model(model_spec, workspace)
    result = suite_accuracy(loaded.model, loaded.tokenizer, folder, method, batch_size, limit,
                            seed, progress, protocol)
    metrics = {k: result[k] for k in ("accuracy", "ci_low", "ci_high", "mean_margin", "n",
                                      "scope", "protocol", "files")} | {"suite": str(folder)}
    rows = ((None, r["item"], r["chosen_score"], r["rejected_score"], int(r["correct"]),
             dumps({"margin": r["margin"], "file": r["file"]})) for r in result["per_pair"])
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
        extra = {k: result[k] for k in ("acc_norm", "acc_norm_ci_low", "acc_norm_ci_high")}
        extra["protocol"] = "choice-tokens"
    else:
        result = pair_accuracy(model, tok, CONCAT_FORMAT, records, method, "reply", batch_size,
                               seed=seed, progress=progress)
        rows = ((None, str(r["index"]), r["chosen_score"], r["rejected_score"],
                 int(r["correct"]), dumps({"margin": r["margin"]})) for r in result["per_pair"])
        extra = {"protocol": pair_protocol(method, "reply")}
    kind = "choices" if as_choices else "pairs"
    metrics = {k: result[k] for k in ("accuracy", "ci_low", "ci_high", "mean_margin", "n",
                                      "scope")} | extra | {"suite": str(path)}
    eval_id = save_eval(store, model_spec, None, Path(path).name, f"{kind}:{method}", metrics,
                         rows, job_id)
    return {"eval_id": eval_id, "model": model_spec, "method": f"{kind}:{method}", **metrics}


def save_win_rate(store: Store, tuned_spec: str, baseline_spec: str, result: dict,
                  job_id: str | None = None) -> int:
    """Store a win-rate result: every generation and verdict as an eval_results row."""
    tuned_spec, baseline_spec = run_spec(store, tuned_spec), run_spec(store, baseline_spec)
    metrics = {k: result[k] for k in ("wins", "ties", "losses", "n", "win_rate", "ci_low",
                                      "ci_high", "judge", "settings", "seed")}
    metrics |= {k: result.get(k) for k in ("lc_win_rate", "lc_ci_low", "lc_ci_high",
                                           "length_slope", "mean_length_tuned",
                                           "mean_length_baseline")}
    metrics |= {"samples": result.get("samples", 1), "prompts": result.get("prompts", result["n"]),
                "baseline": baseline_spec, "accuracy": result["win_rate"], "protocol": "judge"}
    rows = ((None, r["prompt"], r.get("score_a"), r.get("score_b"), int(r["verdict"] == "a"),
             dumps(r)) for r in result["rows"])
    return save_eval(store, tuned_spec, None, "", f"win-rate:{result['judge']}", metrics, rows,
                      job_id)


def win_rate_prompts(store: Store, dataset: str | int, split: str | None, limit: int) -> list[str]:
    """The first `limit` distinct prompts of a dataset split."""
    ds = get_dataset(store, dataset)
    prompts = list(dict.fromkeys(p.prompt for p in iter_pairs(store, ds.id, split or None)))
    if not prompts:
        raise DataError(f"Dataset '{ds.name}' has no prompts in split '{split}'.",
                        "Pick another split (e.g. train), or split the dataset first.")
    return prompts[:limit]


def run_win_rate(store: Store, tuned_spec: str, baseline_spec: str | None, dataset: str | int,
                 split: str | None = "eval", judge: str = "lexicon", *, prompts: int = 8,
                 samples: int = 1, max_new_tokens: int = 32, judge_template: str | None = None,
                 seed: int = 0, job_id: str | None = None, workspace=None,
                 progress: Progress = no_progress) -> dict:
    """Tuned vs baseline answers on a dataset's prompts, judged (`lexicon`, `reward:SPEC`,
    `llm:SPEC`); stored as one eval. Without `baseline_spec` a run is compared with its base."""
    kind, judge_model = parse_judge(judge)
    if judge_template and kind == "llm":
        check_judge_template(judge_template)
    if samples < 1 or prompts < 1 or max_new_tokens < 1:
        raise ConfigError(f"prompts={prompts}, samples={samples}, max_new_tokens="
                          f"{max_new_tokens}.", "Use 1 or more of each.")
    texts = win_rate_prompts(store, dataset, split, prompts)
    tuned = resolve_model(run_spec(store, tuned_spec), workspace)
    baseline_spec = baseline_spec or tuned.base_spec
    if not baseline_spec:
        raise ConfigError(f"{tuned_spec} is not a fine-tuned run, so it has no base to compare "
                          "with.", "Pass --baseline SPEC.")
    progress(0.1, f"loading the {kind} judge")
    judge_obj = make_judge(kind, judge_model, judge_template)
    progress(0.2, f"{len(texts)} prompts x {samples} samples with both models")
    settings = replace(WIN_RATE_SAMPLING, max_new_tokens=max_new_tokens)
    result = win_rate(tuned, resolve_model(baseline_spec, workspace), texts, judge_obj,
                      settings, seed, samples)
    eval_id = save_win_rate(store, tuned_spec, baseline_spec, result, job_id)
    progress(1.0, "Win rate finished.")
    return {"eval_id": eval_id, "model": run_spec(store, tuned_spec),
            "baseline": run_spec(store, baseline_spec), "method": f"win-rate:{result['judge']}",
            **{k: v for k, v in result.items() if k != "rows"}}
