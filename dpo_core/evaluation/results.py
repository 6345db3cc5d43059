"""Stored evaluations (the `evals` and `eval_results` tables): save, list, details, comparison
tables and flip analysis between two evaluations."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from ..data.datasets import dataset_names_by_id, get_dataset, pair_texts
from ..errors import NotFoundError
from ..store import Store, dumps, now


def save_eval(store: Store, model_spec: str, dataset_id: int | None, split: str, method: str,
              metrics: dict, results: Iterable[tuple], job_id: str | None = None) -> int:
    """Store one evaluation and its per-pair rows (pair_id, item, chosen_score, rejected_score,
    correct, detail_json); returns its id."""
    run_id = model_spec[4:] if model_spec.startswith("run:") else None
    with store.write() as conn:
        cur = conn.execute(
            "INSERT INTO evals(job_id, model_spec, run_id, dataset_id, split, method, "
            "metrics_json, at) VALUES(?,?,?,?,?,?,?,?)",
            (job_id, model_spec, run_id, dataset_id, split, method, dumps(metrics), now()))
        eval_id = cur.lastrowid
        conn.executemany(
            "INSERT INTO eval_results(eval_id, pair_id, item, chosen_score, rejected_score, "
            "correct, detail_json) VALUES(?,?,?,?,?,?,?)",
            ((eval_id, *row) for row in results))
    return eval_id


def list_evals(store: Store, dataset: str | int | None = None) -> list[dict]:
    """Stored evaluations, newest first, with their metrics."""
    sql, params = "SELECT * FROM evals", ()
    if dataset is not None:
        sql, params = sql + " WHERE dataset_id=?", (get_dataset(store, dataset).id,)
    rows = store.query(sql + " ORDER BY id DESC", params)
    names = dataset_names_by_id(store)
    out = []
    for r in rows:
        metrics = json.loads(r["metrics_json"] or "{}")
        out.append({"id": r["id"], "model": r["model_spec"], "run_id": r["run_id"],
                    "dataset": names.get(r["dataset_id"]), "split": r["split"], "method": r["method"],
                    "at": r["at"], **metrics, "benchmark": _benchmark(metrics, r["split"])})
    return out


def _get_eval(store: Store, eval_id: int):
    row = store.query_one("SELECT * FROM evals WHERE id=?", (eval_id,))
    if row is None:
        raise NotFoundError(f"No evaluation #{eval_id}.",
                            "List them with `python -m dpo_core evals list`.")
    return row


def _benchmark(metrics: dict, split: str) -> str:
    """What an evaluation scored, as tables name it: dataset/split, a suite or a file."""
    if metrics.get("dataset"):
        return f"{metrics['dataset']}/{split or 'all'}"
    return metrics.get("suite") or split


def eval_details(store: Store, eval_id: int) -> dict:
    """One stored evaluation: what was scored, its metrics and every per-pair result."""
    row = _get_eval(store, eval_id)
    bench = compare_evals(store, [eval_id])[0]["benchmark"]
    results = [{"pair_id": r["pair_id"], "item": r["item"], "chosen_score": r["chosen_score"],
                "rejected_score": r["rejected_score"],
                "correct": None if r["correct"] is None else bool(r["correct"]),
                **json.loads(r["detail_json"] or "{}")}
               for r in store.query("SELECT * FROM eval_results WHERE eval_id=? ORDER BY rowid",
                                    (eval_id,))]
    return {"id": eval_id, "model": row["model_spec"], "run_id": row["run_id"],
            "benchmark": bench, "split": row["split"], "method": row["method"], "at": row["at"],
            "metrics": json.loads(row["metrics_json"] or "{}"), "results": results}


def compare_evals(store: Store, eval_ids: Sequence[int]) -> list[dict]:
    """Model x benchmark rows (accuracy and interval) for a comparison table or chart."""
    out = []
    for eval_id in eval_ids:
        row = _get_eval(store, eval_id)
        metrics = json.loads(row["metrics_json"] or "{}")
        out.append({"eval_id": eval_id, "model": row["model_spec"],
                    "benchmark": _benchmark(metrics, row["split"]),
                    "method": row["method"], "accuracy": metrics.get("accuracy"),
                    "ci_low": metrics.get("ci_low"), "ci_high": metrics.get("ci_high"),
                    "n": metrics.get("n")})
    return out


def _results(store: Store, eval_id: int) -> dict:
    rows = store.query("SELECT * FROM eval_results WHERE eval_id=?", (eval_id,))
    return {(r["pair_id"], r["item"]): r for r in rows}


def flip_analysis(store: Store, eval_a: int, eval_b: int) -> dict:
    """Pairs A (baseline) got wrong and B (tuned) right (`fixed`), and the reverse (`broken`)."""
    _get_eval(store, eval_a), _get_eval(store, eval_b)
    ra, rb = _results(store, eval_a), _results(store, eval_b)
    ids = [k[0] for k in ra if k in rb and k[0] is not None]
    texts = pair_texts(store, ids)
    fixed, broken = [], []
    for key, a in ra.items():
        b = rb.get(key)
        if b is None or a["correct"] == b["correct"]:
            continue
        row = {"pair_id": key[0], "item": key[1], **texts.get(key[0], {}),
               "baseline_chosen": a["chosen_score"], "baseline_rejected": a["rejected_score"],
               "tuned_chosen": b["chosen_score"], "tuned_rejected": b["rejected_score"]}
        (fixed if b["correct"] else broken).append(row)
    same = sum(1 for k in ra if k in rb)
    return {"fixed": fixed, "broken": broken, "compared": same}


def job_evals(store: Store, job_id: str) -> list[int]:
    """Ids of the evals a job stored, in the order it stored them."""
    return [r["id"] for r in store.query("SELECT id FROM evals WHERE job_id=? ORDER BY id",
                                         (job_id,))]


def eval_dataset(store: Store, eval_id: int) -> str | None:
    """The name of the dataset an evaluation scored (None for suites, files, win rates)."""
    dataset_id = _get_eval(store, eval_id)["dataset_id"]
    return None if dataset_id is None else dataset_names_by_id(store).get(dataset_id)


def result_details(store: Store, eval_id: int) -> list[dict]:
    """The detail record of every per-pair row (a win rate's prompt, answers and verdict)."""
    return [json.loads(r["detail_json"] or "{}") for r in store.query(
        "SELECT detail_json FROM eval_results WHERE eval_id=? ORDER BY rowid", (eval_id,))]
