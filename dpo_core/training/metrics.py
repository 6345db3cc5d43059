"""A run's logged values and sample generations in the store (the `metrics` and `samples`
tables): written by the trainer's callback or an imported log, read by live views and tables.

Keys are TRL's verbatim (`loss`, `rewards/margins`, ...); `eval_*` keys are in split 'eval'.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..jobs.channel import Channel
from ..store import Store, now

SUMMARY_KEYS = ("loss", "rewards/accuracies", "rewards/margins", "eval_loss",
                "eval_rewards/accuracies", "eval_rewards/margins")
# what the trainer logs once, when a train() call ends: a cancelled part's values describe that
# part only, so a resume drops them (the resumed part logs the whole run's at its end)
END_OF_TRAINING_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second",
                        "total_flos", "train_loss")
UPSERT = ("INSERT OR REPLACE INTO metrics(run_id, step, split, key, value, at) "
          "VALUES(?,?,?,?,?,?)")


def split_of(key: str) -> str:
    return "eval" if key.startswith("eval_") else "train"


def write_metrics(store: Store | Channel, run_id: str, step: int, logs: dict,
                  at: float | None = None) -> int:
    """Upsert one log record (numbers only; NaN/inf kept as NULL); returns the rows written.
    A cluster job's writer is its channel: the record becomes a line the lab ingests."""
    at = at or now()
    rows = []
    for key, value in logs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        value = float(value)
        rows.append((run_id, step, split_of(key), key, value if math.isfinite(value) else None, at))
    if rows and isinstance(store, Channel):
        store.append("metrics", step=step, logs={r[3]: r[4] for r in rows})
    elif rows:
        with store.write() as conn:
            # REPLACE gives the row a new id, so incremental readers (after_id) see rewritten values
            conn.executemany(UPSERT, rows)
    return len(rows)


def write_records(store: Store, run_id: str, records: Iterable[tuple[int, dict]],
                  at: float | None = None) -> None:
    """Many (step, {key: value}) records in one transaction; a later one for a step/key wins."""
    at = at or now()
    rows = [(run_id, step, split_of(key), key, value, at)
            for step, values in records for key, value in values.items()]
    with store.write() as conn:
        conn.executemany(UPSERT, rows)


def read_metrics(store: Store, run_id: str, after_id: int = 0) -> list[dict]:
    """Metric rows with id > after_id (a live view polls with the last id it saw)."""
    rows = store.query("SELECT id, step, split, key, value, at FROM metrics "
                       "WHERE run_id=? AND id>? ORDER BY id", (run_id, after_id))
    return [dict(r) for r in rows]


def last_values(store: Store, run_id: str, keys: Iterable[str] | None = None) -> dict[str, float]:
    """The last logged value of every key of a run (or of `keys`), by step."""
    rows = store.query("SELECT key, value FROM metrics WHERE run_id=? AND value IS NOT NULL "
                       "ORDER BY step, id", (run_id,))
    wanted = None if keys is None else set(keys)
    return {r["key"]: r["value"] for r in rows if wanted is None or r["key"] in wanted}


def last_values_of(store: Store, run_ids: Iterable[str],
                   keys: Iterable[str] = SUMMARY_KEYS) -> dict[str, dict[str, float]]:
    """{run_id: {key: last written value}} for the given runs and keys.

    One indexed lookup per run and key (metrics_last index), so the cost does not grow with the
    number of logged steps."""
    keys = list(keys)
    out: dict[str, dict[str, float]] = {}
    for run_id in run_ids:
        for key in keys:
            row = store.query_one("SELECT value FROM metrics WHERE run_id=? AND key=? "
                                  "ORDER BY id DESC LIMIT 1", (run_id, key))
            if row is not None:
                out.setdefault(run_id, {})[key] = row["value"]
    return out


def value_at(store: Store, run_id: str, key: str, step: int) -> float | None:
    return store.scalar("SELECT value FROM metrics WHERE run_id=? AND key=? AND step=?",
                        (run_id, key, step))


def logged_steps(store: Store, run_id: str) -> tuple[int, list[str]]:
    """How many distinct steps a run logged, and its keys (sorted)."""
    steps = store.scalar("SELECT COUNT(DISTINCT step) FROM metrics WHERE run_id=?", (run_id,))
    keys = [r[0] for r in store.query("SELECT DISTINCT key FROM metrics WHERE run_id=? "
                                      "ORDER BY key", (run_id,))]
    return steps, keys


def write_sample(store: Store | Channel, run_id: str, step: int, prompt: str,
                 completion: str) -> None:
    if isinstance(store, Channel):
        store.append("sample", step=step, prompt=prompt, completion=completion)
        return
    with store.write() as conn:
        conn.execute("INSERT INTO samples(run_id, step, prompt, completion, at) VALUES(?,?,?,?,?)",
                     (run_id, step, prompt, completion, now()))


def read_samples(store: Store, run_id: str) -> list[dict]:
    return [dict(r) for r in store.query(
        "SELECT step, prompt, completion, at FROM samples WHERE run_id=? ORDER BY id", (run_id,))]


def forget_after(store: Store, run_id: str, step: int) -> None:
    """Drop metrics and samples past `step` (a resumed run logs them again from there) and the
    end-of-training values of the part that stopped."""
    with store.write() as conn:
        conn.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, step))
        conn.execute(f"DELETE FROM metrics WHERE run_id=? AND key IN "
                     f"({', '.join('?' * len(END_OF_TRAINING_KEYS))})",
                     (run_id, *END_OF_TRAINING_KEYS))
        conn.execute("DELETE FROM samples WHERE run_id=? AND step>?", (run_id, step))


def forget_run(store: Store, run_id: str) -> None:
    """Drop every metric and sample of a run (it is being deleted)."""
    with store.write() as conn:
        conn.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
        conn.execute("DELETE FROM samples WHERE run_id=?", (run_id,))


def apply_event(store: Store, run_id: str, event: dict) -> None:
    """A training run's channel line in the store (`jobs.channel.ingest` calls it, in its
    transaction): metrics, a sample, or a resume (a requeued worker restarting from a
    checkpoint: what was logged past it is dropped, as `runs.resume_run` does)."""
    kind, at = event.get("e"), event.get("at")
    if kind == "metrics":
        write_metrics(store, run_id, int(event["step"]), event.get("logs") or {}, at)
    elif kind == "sample":
        with store.write() as conn:
            conn.execute("INSERT INTO samples(run_id, step, prompt, completion, at) "
                         "VALUES(?,?,?,?,?)", (run_id, int(event["step"]), event["prompt"],
                                                event["completion"], at or now()))
    elif kind == "resume":
        forget_after(store, run_id, int(event.get("step") or 0))


SINK = "dpo_core.training.metrics:apply_event"  # how jobs.channel finds apply_event
