"""Choosing the next trial's parameters: grid, seeded random, or Optuna's TPE over a study rebuilt in
memory from the recorded trials (the lab's store stays the truth)."""

from __future__ import annotations

import itertools
import math
import random

from .config import SweepConfig, choice_values, distributions, parameter_kind


def grid(cfg: SweepConfig) -> list[dict]:
    """Every combination of the parameters' values, in file order."""
    keys = list(cfg.parameters)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(choice_values(cfg.parameters[k]) for k in keys))]


def suggest(cfg: SweepConfig, trials: list[dict], number: int) -> dict:
    """The parameters of trial `number` given the recorded trials (the store's rows)."""
    if number < len(cfg.enqueue):
        return dict(cfg.enqueue[number])
    n = number - len(cfg.enqueue)
    if cfg.method == "grid":
        combos = grid(cfg)
        return combos[n % len(combos)]
    if cfg.method == "random":
        rng = random.Random(f"{cfg.seed}-{n}")
        return {k: _sample(rng, spec) for k, spec in cfg.parameters.items()}
    return _suggest_tpe(cfg, trials)


def _sample(rng: random.Random, spec):
    kind = parameter_kind(spec)
    if kind == "choice":
        return rng.choice(choice_values(spec))
    low, high = float(spec["min"]), float(spec["max"])
    if kind == "int":
        return rng.randint(int(low), int(high))
    if kind == "loguniform":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.uniform(low, high)


def _suggest_tpe(cfg: SweepConfig, trials: list[dict]) -> dict:
    """Optuna TPE over a study rebuilt in memory from the recorded trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = distributions(cfg)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed + len(trials), n_startup_trials=2)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler,
                                direction=cfg.goal)
    for t in trials:
        params = {k: v for k, v in t["params"].items() if k in dists}
        if set(params) != set(dists) or not all(contains(dists[k], v) for k, v in params.items()):
            continue  # an enqueued trial outside the space teaches TPE nothing sound
        ok = t["status"] == "completed" and t["value"] is not None
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=t["value"] if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL))
    return study.ask(dists).params


def contains(dist, value) -> bool:
    try:
        return dist._contains(dist.to_internal_repr(value))
    except (ValueError, TypeError):
        return False
