"""Sweeps: a queue of DPO runs over hyper-parameters (or datasets), each evaluated against the
baseline, as one background job.

A sweep is a `sweeps` row plus one `sweep_trials` row per run; the job (kind 'sweep', target
`run_sweep_job`) asks for the next config (grid, random, or Optuna's TPE rebuilt in memory from the
stored trials, so the lab's store stays the truth), starts the run, waits (pruning hopeless runs at
an intermediate step), evaluates the finished run's eval split against the base model, records the
trial and goes on, also when a run fails. Pause marks the sweep 'pausing'; the job stops after the current run (cancelling the job's
process does the same: the runner turns SIGTERM into `ctx.cancelled()`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import secrets
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError, DPOLabError, JobError, NotFoundError
from .store import Store, dumps, now

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
FINAL_TRIAL = ("completed", "failed", "pruned", "cancelled")
OWN_METRICS = ("pair_accuracy", "gain")  # computed by the sweep's evaluation, not the trainer
TARGET = "dpo_core.sweeps:run_sweep_job"
POLL_S = 1.0


def _f(default, help: str):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: json.loads(json.dumps(default)),
                     metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class SweepConfig:
    """A sweep: base run config, parameters to search, method, metric and goal, budget."""

    name: str = _f("sweep", "A label for the sweep; its runs are named <name>-<number>.")
    base: str | dict = _f("", "The base RunConfig: a recipe path or an inline mapping of fields.")
    set: dict = _f({}, "Fixed overrides of the base, dotted keys (e.g. {max_steps: 3}).")
    parameters: dict = _f({}, "Swept RunConfig keys (dotted, or `dataset`): {values: [...]} or "
                              "{distribution: uniform|loguniform|int, min: A, max: B}.")
    enqueue: list = _f([], "Trials to run first, as given: a list of {key: value} mappings.")
    method: str = _f("random", "grid (every combination), random, or bayes (Optuna TPE).")
    metric: str = _f("eval_rewards/accuracies", "What to optimise: a logged key (eval_loss, "
                                                "eval_rewards/accuracies, ...), pair_accuracy or "
                                                "gain (the sweep's own evaluation).")
    goal: str = _f("maximize", "maximize or minimize the metric.")
    budget: int = _f(4, "Number of runs (raise it later with extend).")
    seed: int = _f(0, "Seed of the random/bayes search.")
    prune_at_step: int = _f(0, "Median pruning: at this step, stop a run whose `prune_metric` is "
                               "worse than the median of finished runs at that step (0 = off).")
    prune_metric: str = _f("loss", "Logged key compared for pruning (lower is better for loss "
                                   "keys, else higher).")
    eval_dataset: str = _f("", "Dataset every finished run and the baseline are evaluated on "
                               "('' = the run's own dataset).")
    eval_split: str = _f("eval", "Split of that dataset used for evaluation ('' = all pairs).")
    eval_limit: int = _f(64, "Evaluate on the first N pairs of that split (0 = all).")
    ref_cache: bool = _f(True, "Share the reference log-probs between runs with the same inputs "
                               "(sets precompute_ref_log_probs for lora/full runs).")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: dict) -> SweepConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"Unknown sweep field '{unknown[0]}'.",
                              f"Use one of: {', '.join(sorted(names))}.")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> SweepConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Sweep file {path} does not exist.",
                              "Pass a sweep YAML, e.g. recipes/sweep-tiny-random.yaml.")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}", "Fix the YAML syntax.") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} holds no mapping of sweep fields.",
                              "Write one 'field: value' per line.")
        if isinstance(data.get("base"), str) and not Path(data["base"]).is_absolute():
            local = path.parent / data["base"]  # relative to the sweep file, else to the cwd
            if local.is_file():
                data["base"] = str(local)
        return cls.from_dict(data)


def field_help() -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(SweepConfig)}


# ---------------------------------------------------------------------------------------
# Parameters and validation
# ---------------------------------------------------------------------------------------
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


def _values(spec) -> list:
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
            out[key] = d.CategoricalDistribution(_values(spec))
        elif kind == "int":
            low, high = _bounds(key, spec)
            out[key] = d.IntDistribution(int(low), int(high))
        else:
            low, high = _bounds(key, spec)
            out[key] = d.FloatDistribution(low, high, log=kind == "loguniform")
    return out


def base_config(cfg: SweepConfig):
    """The base RunConfig with the fixed overrides applied."""
    from .training.config import RunConfig, apply_overrides

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
    from .training.config import apply_overrides

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
        if parameter_kind(spec) == "choice" and not _values(spec):
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


def grid(cfg: SweepConfig) -> list[dict]:
    """Every combination of the parameters' values, in file order."""
    keys = list(cfg.parameters)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(_values(cfg.parameters[k]) for k in keys))]


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
        return rng.choice(_values(spec))
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
        if set(params) != set(dists) or not all(_contains(dists[k], v) for k, v in params.items()):
            continue  # an enqueued trial outside the space teaches TPE nothing sound
        ok = t["status"] == "completed" and t["value"] is not None
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=t["value"] if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL))
    return study.ask(dists).params


def _contains(dist, value) -> bool:
    try:
        return dist._contains(dist.to_internal_repr(value))
    except (ValueError, TypeError):
        return False


# ---------------------------------------------------------------------------------------
# Store rows
# ---------------------------------------------------------------------------------------
def _sweep_dict(row) -> dict:
    d = dict(row)
    d["config"] = json.loads(d.pop("config_json") or "{}")
    d["baseline"] = json.loads(d.pop("baseline_json") or "{}")
    return d


def get_sweep(store: Store, sweep_id: str) -> dict:
    """The sweep row (status reconciled with its job) and its trials."""
    row = store.query_one("SELECT * FROM sweeps WHERE id=?", (sweep_id,)) or \
        store.query_one("SELECT * FROM sweeps WHERE id LIKE ? OR name=? ORDER BY created DESC",
                        (sweep_id + "%", sweep_id))
    if row is None:
        raise NotFoundError(f"No sweep '{sweep_id}' in this workspace.",
                            "List sweeps with `python -m dpo_core sweeps list`.")
    sweep = _sweep_dict(row)
    if sweep["status"] in ("running", "pausing") and sweep["job_id"]:
        from .jobs import FINAL, job_status

        job = job_status(store, sweep["job_id"])
        if job["status"] in FINAL:  # the job ended without writing the sweep's status
            paused = job["status"] == "cancelled" or sweep["status"] == "pausing"
            sweep["status"] = "paused" if paused else "stopped"
            sweep["error"] = job.get("error_text") or ""
    sweep["trials"] = list_trials(store, sweep["id"])
    return sweep


def list_sweeps(store: Store) -> list[dict]:
    """Sweeps newest first, with trial counts."""
    out = []
    for row in store.query("SELECT id FROM sweeps ORDER BY created DESC"):
        s = get_sweep(store, row["id"])
        counts = {}
        for t in s["trials"]:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        s["counts"] = counts
        out.append(s)
    return out


def list_trials(store: Store, sweep_id: str) -> list[dict]:
    rows = store.query("SELECT * FROM sweep_trials WHERE sweep_id=? ORDER BY number", (sweep_id,))
    out = []
    for r in rows:
        d = dict(r)
        d["params"] = json.loads(d.pop("params_json") or "{}")
        d["result"] = json.loads(d.pop("gain_json") or "{}")
        out.append(d)
    return out


def create_sweep(store: Store, cfg: SweepConfig) -> str:
    """Validate and insert a sweep (not started); returns its id."""
    validate_sweep(cfg)
    sweep_id = "sweep-" + time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    with store.write() as conn:
        conn.execute("INSERT INTO sweeps(id, name, config_json, status, created) "
                     "VALUES(?,?,?,?,?)", (sweep_id, cfg.name, dumps(cfg.to_dict()), "created",
                                          now()))
    return sweep_id


def start_sweep(store: Store, cfg: SweepConfig) -> str:
    """Create the sweep and start its background job; returns the sweep id."""
    sweep_id = create_sweep(store, cfg)
    _launch(store, sweep_id)
    return sweep_id


def _launch(store: Store, sweep_id: str) -> str:
    from .jobs import start_job

    job_id = start_job(store, "sweep", {"sweep_id": sweep_id}, TARGET,
                       name=f"sweep {sweep_id}")
    _set(store, sweep_id, status="running", job_id=job_id)
    return job_id


def _set(store: Store, sweep_id: str, **cols) -> None:
    sets = ", ".join(f"{k}=?" for k in cols)
    with store.write() as conn:
        conn.execute(f"UPDATE sweeps SET {sets} WHERE id=?", (*cols.values(), sweep_id))


def pause_sweep(store: Store, sweep_id: str) -> dict:
    """Stop the sweep after its current run (that run finishes and is recorded)."""
    sweep = get_sweep(store, sweep_id)
    if sweep["status"] not in ("running", "pausing"):
        raise JobError(f"Sweep {sweep['id']} is {sweep['status']}, not running.",
                       "Only a running sweep can be paused.")
    _set(store, sweep["id"], status="pausing")  # the job reads it between runs and stops
    return get_sweep(store, sweep["id"])


def resume_sweep(store: Store, sweep_id: str) -> dict:
    """Start a new job for a paused or stopped sweep with budget left."""
    sweep = get_sweep(store, sweep_id)
    if sweep["status"] in ("running", "pausing"):
        raise JobError(f"Sweep {sweep['id']} is {sweep['status']}.",
                       "Wait for it to pause, or pause it first.")
    if len(sweep["trials"]) >= sweep["config"]["budget"]:
        raise JobError(f"Sweep {sweep['id']} has used its budget of "
                       f"{sweep['config']['budget']} runs.",
                       f"Raise it: `python -m dpo_core sweeps extend {sweep['id']} --budget N`.")
    _launch(store, sweep["id"])
    return get_sweep(store, sweep["id"])


def extend_sweep(store: Store, sweep_id: str, budget: int, start: bool = True) -> dict:
    """Raise the budget to `budget` runs; a finished sweep starts again (unless start=False)."""
    sweep = get_sweep(store, sweep_id)
    old = sweep["config"]["budget"]
    if budget <= old:
        raise ConfigError(f"The new budget {budget} is not above the current {old}.",
                          f"Pass --budget {old + 2} or more.")
    config = {**sweep["config"], "budget": int(budget)}
    status = sweep["status"] if sweep["status"] in ("running", "pausing") else "paused"
    with store.write() as conn:
        conn.execute("UPDATE sweeps SET config_json=?, status=? WHERE id=?",
                     (dumps(config), status, sweep["id"]))
    if start and status == "paused":
        return resume_sweep(store, sweep["id"])
    return get_sweep(store, sweep["id"])


def wait_sweep(store: Store, sweep_id: str, poll: float = 1.0, on_tick=None,
               timeout: float | None = None) -> dict:
    """Block until the sweep is no longer running (the CLI and tests)."""
    start = time.monotonic()
    while True:
        sweep = get_sweep(store, sweep_id)
        if on_tick:
            on_tick(sweep)
        if sweep["status"] not in ("running", "pausing", "created"):
            return sweep
        if timeout is not None and time.monotonic() - start > timeout:
            return sweep
        time.sleep(poll)


# ---------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------
def run_sweep_job(config: dict, ctx) -> dict:
    """Background job target: run trials until the budget is used or a pause is asked for."""
    store, sweep_id = ctx.store, config["sweep_id"]
    cfg = SweepConfig.from_dict(get_sweep(store, sweep_id)["config"])
    _recover(store, sweep_id, cfg)
    while True:
        sweep = get_sweep(store, sweep_id)
        cfg = SweepConfig.from_dict(sweep["config"])  # extend may have raised the budget
        trials = sweep["trials"]
        ctx.progress(len(trials), cfg.budget, sweep_id=sweep_id)
        if len(trials) >= cfg.budget:
            _set(store, sweep_id, status="completed")
            return {"sweep_id": sweep_id, "trials": len(trials)}
        if ctx.cancelled() or sweep["status"] == "pausing":
            _set(store, sweep_id, status="paused")
            return {"sweep_id": sweep_id, "trials": len(trials), "paused": True}
        run_trial(store, cfg, sweep_id, len(trials), trials)


def _recover(store: Store, sweep_id: str, cfg: SweepConfig) -> None:
    """Trials left 'running' by a stopped job: wait for their run, or mark them failed."""
    for t in list_trials(store, sweep_id):
        if t["status"] != "running":
            continue
        if t["run_id"]:
            _finish_trial(store, cfg, sweep_id, t["number"], t["run_id"])
        else:
            _record(store, sweep_id, t["number"], "failed", None,
                    {"error": "The sweep stopped before this run started."})


def run_trial(store: Store, cfg: SweepConfig, sweep_id: str, number: int,
              trials: list[dict]) -> dict:
    """Suggest, start, wait, evaluate and record one trial; a failure is recorded, not raised."""
    from .training.jobs import start_run

    params = suggest(cfg, trials, number)
    with store.write() as conn:
        conn.execute("INSERT INTO sweep_trials(sweep_id, number, params_json, status) "
                     "VALUES(?,?,?,?)", (sweep_id, number, dumps(params), "running"))
    try:
        run_id = start_run(store, run_config(cfg, params, number))
    except DPOLabError as exc:
        return _record(store, sweep_id, number, "failed", None, {"error": str(exc)})
    with store.write() as conn:
        conn.execute("UPDATE sweep_trials SET run_id=? WHERE sweep_id=? AND number=?",
                     (run_id, sweep_id, number))
    return _finish_trial(store, cfg, sweep_id, number, run_id)


def _finish_trial(store: Store, cfg: SweepConfig, sweep_id: str, number: int,
                  run_id: str) -> dict:
    from .training.jobs import get_run

    run = _wait_or_prune(store, cfg, sweep_id, run_id)
    runtime = (run["finished"] or now()) - (run["started"] or run["created"])
    result = {"metrics": latest_metrics(store, run_id), "runtime": runtime}
    if run["status"] == "pruned":
        return _record(store, sweep_id, number, "pruned", None, result | {
            "error": f"Pruned at step {cfg.prune_at_step}: {cfg.prune_metric} worse than the "
                     "median of the finished runs."})
    if run["status"] != "completed":
        error = (run.get("error_text") or run["status"]).strip().splitlines()
        return _record(store, sweep_id, number, "failed", None,
                       result | {"error": error[0] if error else run["status"],
                                 "error_kind": run.get("error_kind") or ""})
    try:
        result |= evaluate_trial(store, cfg, sweep_id, get_run(store, run_id))
    except DPOLabError as exc:
        result["eval_error"] = str(exc)
    value = trial_value(cfg.metric, result)
    return _record(store, sweep_id, number, "completed", value, result)


def _record(store: Store, sweep_id: str, number: int, status: str, value, result: dict) -> dict:
    value = value if value is None or math.isfinite(value) else None
    with store.write() as conn:
        conn.execute("UPDATE sweep_trials SET status=?, value=?, gain_json=? "
                     "WHERE sweep_id=? AND number=?",
                     (status, value, dumps(result), sweep_id, number))
    return {"number": number, "status": status, "value": value, **result}


def trial_value(metric: str, result: dict) -> float | None:
    """The trial's objective: the sweep's own evaluation, else the last logged value."""
    if metric in OWN_METRICS:
        return result.get(metric)
    return result["metrics"].get(metric)


def latest_metrics(store: Store, run_id: str) -> dict[str, float]:
    """The last logged value of every key of a run."""
    rows = store.query("SELECT key, value FROM metrics WHERE run_id=? AND value IS NOT NULL "
                       "ORDER BY step, id", (run_id,))
    return {r["key"]: r["value"] for r in rows}


def _wait_or_prune(store: Store, cfg: SweepConfig, sweep_id: str, run_id: str) -> dict:
    """Wait for the run; with pruning on, cancel it at prune_at_step if it is below median."""
    from .training.jobs import FINAL, cancel_run, get_run, schedule

    checked = not cfg.prune_at_step
    while True:
        schedule(store)
        run = get_run(store, run_id)
        if run["status"] in FINAL:
            return run
        if not checked:
            value = _value_at(store, run_id, cfg.prune_metric, cfg.prune_at_step)
            if value is not None:
                checked = True
                if _below_median(store, cfg, sweep_id, value):
                    cancel_run(store, run_id)
                    return {**get_run(store, run_id), "status": "pruned"}
        time.sleep(POLL_S)


def _value_at(store: Store, run_id: str, key: str, step: int) -> float | None:
    return store.scalar("SELECT value FROM metrics WHERE run_id=? AND key=? AND step=?",
                        (run_id, key, step))


def _below_median(store: Store, cfg: SweepConfig, sweep_id: str, value: float) -> bool:
    """True when `value` is worse than the median of completed trials at the pruning step."""
    others = [_value_at(store, t["run_id"], cfg.prune_metric, cfg.prune_at_step)
              for t in list_trials(store, sweep_id) if t["status"] == "completed" and t["run_id"]]
    others = [v for v in others if v is not None]
    if len(others) < 2:
        return False  # too few finished runs to call one hopeless
    median = statistics.median(others)
    lower_better = "loss" in cfg.prune_metric
    return value > median if lower_better else value < median


# ---------------------------------------------------------------------------------------
# Evaluation against the baseline
# ---------------------------------------------------------------------------------------
def baseline(store: Store, cfg: SweepConfig, sweep_id: str, dataset: str, model: str) -> dict:
    """Pair accuracy of the base model on a dataset's eval split: computed once, stored."""
    from .evaluation import run_evaluation

    known = get_sweep(store, sweep_id)["baseline"]
    key = f"{model}|{dataset}"
    if key in known:
        return known[key]
    summary = run_evaluation(store, model, dataset, cfg.eval_split, ("mean-logp",),
                             limit=cfg.eval_limit or None)[0]
    entry = {k: summary[k] for k in ("accuracy", "ci_low", "ci_high", "n", "eval_id")}
    with store.write() as conn:  # read-modify-write inside one transaction
        raw = conn.execute("SELECT baseline_json FROM sweeps WHERE id=?",
                           (sweep_id,)).fetchone()[0]
        conn.execute("UPDATE sweeps SET baseline_json=? WHERE id=?",
                     (dumps({**json.loads(raw or "{}"), key: entry}), sweep_id))
    return entry


def evaluate_trial(store: Store, cfg: SweepConfig, sweep_id: str, run: dict) -> dict:
    """The run's pair accuracy on the eval split, the baseline's, and the gain."""
    from .evaluation import run_evaluation

    dataset = cfg.eval_dataset or run["config"]["dataset"]
    model = run["config"]["model"]
    base = baseline(store, cfg, sweep_id, dataset, model)
    summary = run_evaluation(store, f"run:{run['id']}", dataset, cfg.eval_split, ("mean-logp",),
                             limit=cfg.eval_limit or None)[0]
    return {"pair_accuracy": summary["accuracy"], "baseline_accuracy": base["accuracy"],
            "gain": summary["accuracy"] - base["accuracy"], "eval_id": summary["eval_id"],
            "dataset": dataset}


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------
def leaderboard(sweep: dict) -> list[dict]:
    """Trials best first (by the sweep's metric and goal), failed and pruned last.

    Columns follow a W&B sweep export: name, parameters, eval loss, eval reward accuracy, plus
    the sweep's pair accuracy, gain over the baseline, runtime, status and error.
    """
    cfg = SweepConfig.from_dict(sweep["config"])
    rows = []
    for t in sweep["trials"]:
        res, metrics = t["result"], t["result"].get("metrics", {})
        row = {"number": t["number"], "name": f"{cfg.name}-{t['number']}",
               "run_id": t["run_id"] or "", "status": t["status"]}
        row |= {k: v for k, v in t["params"].items()}
        row.setdefault("dataset", res.get("dataset"))
        row |= {"eval_loss": metrics.get("eval_loss"),
                "eval_rewards/accuracies": metrics.get("eval_rewards/accuracies"),
                "pair_accuracy": res.get("pair_accuracy"),
                "baseline_accuracy": res.get("baseline_accuracy"), "gain": res.get("gain"),
                cfg.metric: t["value"] if t["status"] == "completed" else None,
                "runtime": res.get("runtime"), "error": res.get("error", "")}
        rows.append(row)
    sign = -1 if cfg.goal == "maximize" else 1

    def order(row):
        v = row.get(cfg.metric)
        return (row["status"] != "completed", v is None, sign * (v or 0.0), row["number"])

    return sorted(rows, key=order)


def best_trial(sweep: dict) -> dict | None:
    """The best completed trial's leaderboard row, or None."""
    rows = [r for r in leaderboard(sweep) if r["status"] == "completed" and r["run_id"]]
    return rows[0] if rows else None


def importance(sweep: dict) -> dict[str, float]:
    """Parameter importance: Optuna's fANOVA-free default (>= 3 completed trials), else |corr|."""
    cfg = SweepConfig.from_dict(sweep["config"])
    done = [t for t in sweep["trials"] if t["status"] == "completed" and t["value"] is not None]
    keys = [k for k in cfg.parameters if all(k in t["params"] for t in done)]
    if not done or not keys:
        return {}
    if len(done) >= 3:
        try:
            return _optuna_importance(cfg, done, keys)
        except (RuntimeError, ValueError, ZeroDivisionError):
            pass
    return _correlations(done, keys)


def _optuna_importance(cfg: SweepConfig, done: list[dict], keys: list[str]) -> dict[str, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {k: d for k, d in distributions(cfg).items() if k in keys}
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction=cfg.goal)
    for t in done:
        params = {k: t["params"][k] for k in keys}
        if all(_contains(dists[k], v) for k, v in params.items()):
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                      value=t["value"]))
    return dict(optuna.importance.get_param_importances(study))


def _correlations(done: list[dict], keys: list[str]) -> dict[str, float]:
    values = [t["value"] for t in done]
    out = {}
    for k in keys:
        xs = [t["params"][k] for t in done]
        if not all(isinstance(x, (int, float)) for x in xs) or len(set(xs)) < 2 or \
                len(set(values)) < 2:
            out[k] = 0.0
            continue
        out[k] = abs(statistics.correlation([float(x) for x in xs], values))
    return out


def dataset_summary(sweep: dict, metric: str | None = None) -> list[dict]:
    """Metric per dataset (mean, min, max over seeds) for a sweep over datasets."""
    metric = metric or sweep["config"]["metric"]
    by: dict[str, list[float]] = {}
    for row in leaderboard(sweep):
        ds, v = row.get("dataset"), row.get(metric)
        if ds is not None and v is not None and row["status"] == "completed":
            by.setdefault(str(ds), []).append(float(v))
    return [{"dataset": ds, "mean": statistics.fmean(v), "min": min(v), "max": max(v),
             "runs": len(v)} for ds, v in by.items()]
