"""A sweep's configuration: the base run config, the swept parameters (values or distributions),
method, metric and goal, budget, pruning and the evaluation against the baseline; read from
recipes/sweeps/*.yaml."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..fields import build, read_yaml, setting
from ..training.config import RunConfig, apply_overrides

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
OWN_METRICS = ("pair_accuracy", "gain")  # computed by the sweep's evaluation, not the trainer


@dataclass
class SweepConfig:
    """A sweep: base run config, parameters to search, method, metric and goal, budget."""

    name: str = setting("sweep", "A label for the sweep; its runs are named <name>-<number>.")
    base: str | dict = setting("", "The base RunConfig: a recipe path or an inline mapping of fields.")
    set: dict = setting({}, "Fixed overrides of the base, dotted keys (e.g. {max_steps: 3}).")
    parameters: dict = setting({}, "Swept RunConfig keys (dotted, or `dataset`): {values: [...]} or "
                              "{distribution: uniform|loguniform|int, min: A, max: B}.")
    enqueue: list = setting([], "Trials to run first, as given: a list of {key: value} mappings.")
    method: str = setting("random", "grid (every combination), random, or bayes (Optuna TPE).")
    metric: str = setting("eval_rewards/accuracies", "What to optimise: a logged key (eval_loss, "
                                                "eval_rewards/accuracies, ...), pair_accuracy or "
                                                "gain (the sweep's own evaluation).")
    goal: str = setting("maximize", "maximize or minimize the metric.")
    budget: int = setting(4, "Number of runs (raise it later with extend).")
    seed: int = setting(0, "Seed of the random/bayes search.")
    prune_at_step: int = setting(0, "Median pruning: at this step, stop a run whose `prune_metric` is "
                               "worse than the median of finished runs at that step (0 = off).")
    prune_metric: str = setting("loss", "Logged key compared for pruning (lower is better for loss "
                                   "keys, else higher).")
    eval_dataset: str = setting("", "Dataset every finished run and the baseline are evaluated on "
                               "('' = the run's own dataset).")
    eval_split: str = setting("eval", "Split of that dataset used for evaluation ('' = all pairs).")
    eval_limit: int = setting(64, "Evaluate on the first N pairs of that split (0 = all).")
    source: str = setting("", "Where an imported sweep came from (a W&B runs table); empty for "
                             "a sweep the lab runs.")
    ref_cache: bool = setting(True, "Share the reference log-probs between runs with the same inputs "
                               "(sets precompute_ref_log_probs for lora/full runs).")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: dict) -> SweepConfig:
        return build(cls, data, "sweep field")

    @classmethod
    def load(cls, path: str | Path) -> SweepConfig:
        data = read_yaml(path, "Sweep file", "recipes/sweeps/tiny-random.yaml")
        base = data.get("base")
        if isinstance(base, str) and base and not Path(base).is_absolute():
            # relative to the sweep file, else to the cwd; absolute, as the job runs elsewhere
            local = Path(path).parent / base
            data["base"] = str((local if local.is_file() else Path(base)).resolve())
        return cls.from_dict(data)


def parameter_kind(spec) -> str:
    """choice | uniform | loguniform | int, from a parameter's spec (a list means choice)."""
    if isinstance(spec, list):
        return "choice"
    if not isinstance(spec, dict):
        raise ConfigError(f"Parameter spec {spec!r} is neither a list nor a mapping.",
                          "Write {values: [a, b]} or {distribution: uniform, min: A, max: B}.")
    kind = spec.get("distribution") or ("choice" if "values" in spec else "")
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"Parameter distribution {kind!r} is not known.",
                          f"Use one of: {', '.join(DISTRIBUTIONS)} (or give values: [...]).")
    return kind


def choice_values(spec) -> list:
    return spec if isinstance(spec, list) else list(spec.get("values") or [])


def _bounds(key: str, spec: dict) -> tuple[float, float]:
    try:
        low, high = float(spec["min"]), float(spec["max"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"Parameter '{key}' needs numeric min and max.",
                          f"Write {key}: {{distribution: ..., min: A, max: B}}.") from exc
    if not low < high or (spec.get("distribution") == "loguniform" and low <= 0):
        raise ConfigError(f"Parameter '{key}' has min {low} and max {high}.",
                          "Use min < max (and min > 0 for loguniform).")
    return low, high


def distributions(cfg: SweepConfig) -> dict:
    """Optuna distributions of the swept parameters."""
    import optuna.distributions as d

    out = {}
    for key, spec in cfg.parameters.items():
        kind = parameter_kind(spec)
        if kind == "choice":
            out[key] = d.CategoricalDistribution(choice_values(spec))
        elif kind == "int":
            low, high = _bounds(key, spec)
            out[key] = d.IntDistribution(int(low), int(high))
        else:
            low, high = _bounds(key, spec)
            out[key] = d.FloatDistribution(low, high, log=kind == "loguniform")
    return out


def base_config(cfg: SweepConfig):
    """The base RunConfig with the fixed overrides applied."""
    if isinstance(cfg.base, dict):
        run = RunConfig.from_dict(cfg.base)
    elif cfg.base:
        run = RunConfig.load(cfg.base)
    else:
        run = RunConfig()
    return apply_overrides(run, [f"{k}={_yaml_value(v)}" for k, v in cfg.set.items()])


def _yaml_value(value) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True) \
        .strip().removesuffix("\n...").strip()


def run_config(cfg: SweepConfig, params: dict, number: int):
    """The RunConfig of trial `number` with `params` applied (ConfigError names a bad key)."""
    run = apply_overrides(base_config(cfg), [f"{k}={_yaml_value(v)}" for k, v in params.items()])
    extra = {"name": f"{cfg.name}-{number}"}
    if cfg.ref_cache and run.method in ("lora", "full"):
        extra["precompute_ref_log_probs"] = True
    return dataclasses.replace(run, **extra)


def validate_sweep(cfg: SweepConfig) -> SweepConfig:
    """Check method, goal, budget and every parameter before anything starts."""
    if cfg.method not in METHODS:
        raise ConfigError(f"method is {cfg.method!r}.", f"Use one of: {', '.join(METHODS)}.")
    if cfg.goal not in GOALS:
        raise ConfigError(f"goal is {cfg.goal!r}.", "Use maximize or minimize.")
    if not isinstance(cfg.budget, int) or cfg.budget < 1:
        raise ConfigError(f"budget is {cfg.budget!r}.", "Use a whole number of runs >= 1.")
    if not cfg.parameters and not cfg.enqueue:
        raise ConfigError("The sweep has no parameters.",
                          "Add e.g. parameters: {learning_rate: {values: [1e-4, 1e-3]}}.")
    dists = distributions(cfg)
    for key, spec in cfg.parameters.items():
        if parameter_kind(spec) == "choice" and not choice_values(spec):
            raise ConfigError(f"Parameter '{key}' has no values.", "List at least one value.")
        if cfg.method == "grid" and parameter_kind(spec) != "choice":
            raise ConfigError(f"Parameter '{key}' is a distribution but method is grid.",
                              f"Give {key} a list of values, or use method random or bayes.")
    sample = {k: (d.choices[0] if hasattr(d, "choices") else d.low) for k, d in dists.items()}
    run_config(cfg, sample, 0)  # every key exists and the base builds
    if not isinstance(cfg.enqueue, list) or not all(isinstance(e, dict) for e in cfg.enqueue):
        raise ConfigError("enqueue must be a list of {key: value} mappings.",
                          "Write enqueue: [{learning_rate: 0.001}].")
    return cfg
