"""A sweep run elsewhere, imported as the lab's own sweep leaderboard: a Weights & Biases runs
table (the sweep page's "Export CSV": one row per run with Name, State, the run's config
columns and its summary metrics).

Each row becomes a read-only run (kind 'external') holding its config and its summary metrics
at its last step, and a trial of one imported sweep (status 'imported'), so the Sweeps page and
`sweeps show` rank it like a sweep of the lab's: `eval_rewards/accuracies` highest first."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..access import require_owner
from ..errors import DataError
from ..jobs.rows import insert_job, new_job_id
from ..store import Store, dumps, now
from ..training.config import RunConfig
from ..training.external_logs import metric_key, number_cell, text_of
from ..training.metrics import write_records
from .config import SweepConfig
from .control import get_sweep, new_sweep_id
from .report import best_trial

# columns of the W&B table that describe the run rather than configure or measure it
META = ("Name", "State", "Notes", "Tags", "Sweep", "Runtime", "ID", "Created", "User", "Hostname",
        "Group", "Job Type", "Commit", "GPU Type", "GPU Count")
# summary values the HF Trainer logs once at the end (no "/" in their names, yet not config)
SUMMARY = ("train_loss", "train_runtime", "train_samples_per_second", "train_steps_per_second",
           "total_flos", "epoch", "global_step", "_step", "_runtime", "_timestamp")
STATES = {"finished": "completed", "killed": "cancelled", "crashed": "failed", "failed": "failed"}
STEP_COLUMNS = ("train/global_step", "global_step", "_step", "max_steps")
RANKED_BY = (("eval_rewards/accuracies", "maximize"), ("eval_loss", "minimize"),
             ("loss", "minimize"))


def is_runs_table(path: str | Path) -> bool:
    """True for a W&B runs table (Name and State columns), the file `import_sweep_export` takes."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
        return False
    header = next(csv.reader(text_of(path).splitlines()[:1]), [])
    return {"Name", "State"} <= {c.strip() for c in header}


def import_sweep_export(store: Store, path: str | Path, name: str | None = None) -> dict:
    """Store every row of a W&B runs table as a read-only run and trial of one new sweep;
    returns {sweep_id, name, runs, best}."""
    require_owner("import sweeps")
    path = Path(path)
    rows = list(csv.DictReader(text_of(path).splitlines()))
    if not rows:
        raise DataError(f"{path} has a header but no runs.", "Export the sweep's table with its "
                        "runs (W&B sweep page > table > Export CSV).")
    config_cols = _config_columns(path, rows)
    metric, goal = next(((m, g) for m, g in RANKED_BY if any(_metrics(r).get(m) is not None
                                                              for r in rows)), RANKED_BY[0])
    varied = [c for c in config_cols if len({r.get(c, "") for r in rows}) > 1]
    sweeps = sorted({(r.get("Sweep") or "").strip() for r in rows} - {"", "-"})
    if len(sweeps) > 1:  # one file, several W&B sweeps: which one is a column of its own
        varied.append("sweep")
    label = name or path.stem
    values = {c: sorted({_cell(r.get(c, "")) for r in rows}, key=lambda v: (str(type(v)), v))
              for c in varied if c != "sweep"}
    if "sweep" in varied:
        values["sweep"] = sweeps
    cfg = SweepConfig(name=label, parameters={c: {"values": v} for c, v in values.items()},
                      method="random", metric=metric, goal=goal, budget=len(rows),
                      source=f"W&B runs table {path.resolve()}"
                             + (f" (sweeps {', '.join(sweeps)})" if sweeps else ""))
    sweep_id = new_sweep_id()
    with store.write() as conn:  # one transaction: all the rows, or nothing
        conn.execute("INSERT INTO sweeps(id, name, config_json, status, created) "
                     "VALUES(?,?,?,?,?)", (sweep_id, label, dumps(cfg.to_dict()), "imported",
                                          now()))
        for number, row in enumerate(rows, start=1):
            _import_row(store, path, sweep_id, number, row, config_cols, metric, varied)
    best = best_trial(get_sweep(store, sweep_id))
    return {"sweep_id": sweep_id, "name": label, "runs": len(rows), "metric": metric,
            "best": best and {"name": best["name"], "run_id": best["run_id"],
                              metric: best.get(metric)}}


def _config_columns(path: Path, rows: list[dict]) -> list[str]:
    """The run-config columns: every column that is neither W&B metadata nor a metric."""
    header = list(rows[0])
    known = {f for f in RunConfig.__dataclass_fields__}
    cols = [c for c in header if c and c not in META and "/" not in c and c not in SUMMARY]
    if not any(c in known for c in cols):
        raise DataError(f"{path} has no run-config columns (columns: {', '.join(header[:8])} ...).",
                        "Export the sweep table with its config columns shown (beta, "
                        "learning_rate, ...): W&B table > Columns > show the config.")
    return cols


def _cell(text: str):
    """A config cell as int, float or text, whichever it is."""
    text = (text or "").strip()
    value = number_cell(text)
    if value is None:
        return text
    return int(value) if value.is_integer() and not any(c in text for c in ".eE") else value


def _metrics(row: dict) -> dict[str, float | None]:
    """The summary metrics of a row under TRL's names (eval/loss -> eval_loss)."""
    out = {}
    for col, cell in row.items():
        if col and ("/" in col or col in SUMMARY) and col not in STEP_COLUMNS:
            value = number_cell((cell or "").strip())
            if value is not None:  # W&B writes "-" for a metric a run never logged
                out[metric_key(col)] = value if math.isfinite(value) else None
    return out


def _import_row(store: Store, path: Path, sweep_id: str, number: int, row: dict,
                config_cols: list[str], metric: str, varied: list[str]) -> None:
    params = {c: _cell(row.get(c, "")) for c in config_cols}
    metrics = _metrics(row)
    step_cell = next((row[c] for c in STEP_COLUMNS if number_cell(row.get(c) or "") is not None),
                     "0")
    step = int(number_cell(step_cell) or 0)
    state = (row.get("State") or "").strip().lower()
    status = STATES.get(state, "failed")
    runtime = number_cell((row.get("Runtime") or "").strip())
    wandb = {k.lower(): row.get(k, "") for k in ("Name", "State", "Sweep", "Notes", "Tags")
             if k in row}
    run_id = new_job_id("train")
    run_name = (row.get("Name") or "").strip() or f"{sweep_id}-{number}"
    error = "" if status == "completed" else f"W&B state: {state or 'missing'}"
    with store.write() as conn:
        insert_job(conn, run_id, "external", run_name,
                   {**params, "name": run_name, "source": str(path.resolve()),
                    "format": "wandb-runs", "wandb": wandb},
                   "", status=status, finished=now(), step=step, total_steps=step, read_only=1,
                   error_text=error)
        trial_params = {c: params[c] for c in varied if c in params}
        if "sweep" in varied:
            trial_params["sweep"] = (wandb.get("sweep") or "").strip()
        result = {"metrics": {k: v for k, v in metrics.items() if v is not None},
                  "runtime": runtime, "name": run_name, "error": error}
        conn.execute("INSERT INTO sweep_trials(sweep_id, run_id, number, params_json, value, "
                     "status, gain_json) VALUES(?,?,?,?,?,?,?)",
                     (sweep_id, run_id, number, dumps(trial_params), metrics.get(metric), status,
                      dumps(result)))
    write_records(store, run_id, [(step, metrics)])
