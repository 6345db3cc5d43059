"""Stored evaluations (the `evals` and `eval_results` tables): save, list, details, comparison
tables, per-file suite tables, flip analysis and the paired test between two evaluations.

Every evaluation names its scoring protocol (`protocol_of`): older suite evaluations, stored
before whole-sentence scoring, were scored after each sentence's first token.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence

from ..data.datasets import dataset_names_by_id, get_dataset, pair_texts
from ..data.exporter import guard_cell
from ..errors import ConfigError, NotFoundError
from ..store import Store, dumps, now
from .scoring import PAIR_PROTOCOLS, pair_protocol
from .statistics import bootstrap_ci, paired_test
from .suites import SUITE_PROTOCOLS

PROTOCOLS = {**PAIR_PROTOCOLS, **SUITE_PROTOCOLS,
             "choice-tokens": "each choice's tokens after the context; acc_norm per character",
             "judge": "both models answer; a judge picks the better answer"}


def protocol_of(method: str, metrics: dict) -> str:
    """The PROTOCOLS name a stored evaluation was scored by (inferred for older ones)."""
    if metrics.get("protocol"):
        return metrics["protocol"]
    kind, _, name = method.rpartition(":")
    if kind == "suite":
        return "after-first-token"  # the only suite scoring before protocols were stored
    if kind == "choices":
        return "choice-tokens"
    if method.startswith("win-rate"):
        return "judge"
    return pair_protocol(name, metrics.get("scope", "reply"))


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
                    "job_id": r["job_id"], "dataset": names.get(r["dataset_id"]),
                    "split": r["split"], "method": r["method"], "at": r["at"], **metrics,
                    "benchmark": _benchmark(metrics, r["split"]),
                    "protocol": protocol_of(r["method"], metrics)})
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
    metrics = json.loads(row["metrics_json"] or "{}")
    return {"id": eval_id, "model": row["model_spec"], "run_id": row["run_id"],
            "benchmark": bench, "split": row["split"], "method": row["method"], "at": row["at"],
            "protocol": protocol_of(row["method"], metrics), "metrics": metrics,
            "results": results}


def compare_evals(store: Store, eval_ids: Sequence[int]) -> list[dict]:
    """Model x benchmark rows (accuracy and interval) for a comparison table or chart."""
    out = []
    for eval_id in eval_ids:
        row = _get_eval(store, eval_id)
        metrics = json.loads(row["metrics_json"] or "{}")
        out.append({"eval_id": eval_id, "model": row["model_spec"],
                    "benchmark": _benchmark(metrics, row["split"]),
                    "method": row["method"], "protocol": protocol_of(row["method"], metrics),
                    "accuracy": metrics.get("accuracy"), "ci_low": metrics.get("ci_low"),
                    "ci_high": metrics.get("ci_high"), "n": metrics.get("n"),
                    "acc_norm": metrics.get("acc_norm"),
                    "acc_norm_ci_low": metrics.get("acc_norm_ci_low"),
                    "acc_norm_ci_high": metrics.get("acc_norm_ci_high")})
    return out


def _results(store: Store, eval_id: int) -> dict:
    """Per-pair rows keyed by (pair id, item, occurrence): the k-th row with the same pair id and
    item pairs with the k-th of another evaluation (suites stored before items were numbered
    named only the file)."""
    rows, seen = {}, {}
    for r in store.query("SELECT * FROM eval_results WHERE eval_id=? ORDER BY rowid", (eval_id,)):
        key = (r["pair_id"], r["item"])
        seen[key] = seen.get(key, -1) + 1
        rows[(*key, seen[key])] = r
    return rows


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


def paired_comparison(store: Store, baseline: int, tuned: int, seed: int = 0) -> dict:
    """Tuned minus baseline accuracy on the pairs both scored: a paired bootstrap interval of
    the difference and McNemar's exact test (`only_b`: fixed, `only_a`: broken), beside each
    model's own accuracy and interval on those pairs."""
    a, b = _get_eval(store, baseline), _get_eval(store, tuned)
    ra, rb = _results(store, baseline), _results(store, tuned)
    keys = [k for k in ra if k in rb and ra[k]["correct"] is not None
            and rb[k]["correct"] is not None]
    if not keys:
        raise ConfigError(f"Evaluations #{baseline} and #{tuned} share no scored pairs.",
                          "Compare two evaluations of the same pairs, suite or file.")
    correct = {side: [bool(rows[k]["correct"]) for k in keys]
               for side, rows in (("baseline", ra), ("tuned", rb))}
    test = paired_test(correct["baseline"], correct["tuned"], seed)
    own = {}
    for side, row in (("baseline", a), ("tuned", b)):
        low, high = bootstrap_ci(correct[side], seed)
        own[side] = {"eval_id": row["id"], "model": row["model_spec"], "method": row["method"],
                     "accuracy": sum(correct[side]) / len(keys), "ci_low": low, "ci_high": high}
    return {**test, **own, "warning": pairing_warning(_summary(a), _summary(b))}


def _summary(row) -> dict:
    metrics = json.loads(row["metrics_json"] or "{}")
    return {"id": row["id"], "model": row["model_spec"], "method": row["method"],
            "benchmark": _benchmark(metrics, row["split"]),
            "protocol": protocol_of(row["method"], metrics)}


def pairing_warning(a: dict, b: dict) -> str | None:
    """Why comparing evaluation `a` (baseline) with `b` (tuned) pair by pair may mislead."""
    if a["benchmark"] != b["benchmark"]:
        return (f"#{a['id']} scored {a['benchmark']} and #{b['id']} scored {b['benchmark']}: "
                "only the pairs both contain are compared.")
    if a["model"] == b["model"]:
        return (f"Both evaluations are of {a['model']}: differences come from the method, "
                "not from training.")
    if (a["method"], a.get("protocol")) != (b["method"], b.get("protocol")):
        return (f"Different methods ({a['method']}, {a.get('protocol')} vs {b['method']}, "
                f"{b.get('protocol')}): a flip may come from the method, not from training. "
                "Compare the same method on the baseline and the tuned model.")
    return None


def default_flip_evals(evals: Sequence[dict], selected: Sequence[int]) -> tuple[int, int] | None:
    """(baseline, tuned): two evaluations of different models with the same method on the same
    benchmark, the selected ones first; the baseline is the model that is not a run."""
    order = [e for i in selected for e in evals if e["id"] == i] + \
        [e for e in evals if e["id"] not in set(selected)]
    groups: dict[tuple, list[dict]] = {}
    for e in order:
        if e.get("accuracy") is not None and not e["method"].startswith("win-rate"):
            groups.setdefault((e["benchmark"], e["method"], e.get("protocol")), []).append(e)
    for group in groups.values():
        models = list(dict.fromkeys(e["model"] for e in group))
        if len(models) < 2:
            continue
        base = next((m for m in models if not m.startswith("run:")), models[0])
        tuned = next(m for m in models if m != base)
        pick = {m: next(e["id"] for e in group if e["model"] == m) for m in (base, tuned)}
        return pick[base], pick[tuned]
    return None


def suite_files(store: Store, eval_ids: Sequence[int]) -> list[dict]:
    """Per-file (paradigm) rows of suite evaluations: eval, model, file, accuracy, interval, n."""
    out = []
    for eval_id in eval_ids:
        row = _get_eval(store, eval_id)
        metrics = json.loads(row["metrics_json"] or "{}")
        for name, part in (metrics.get("files") or {}).items():
            out.append({"eval_id": eval_id, "model": row["model_spec"], "method": row["method"],
                        "protocol": protocol_of(row["method"], metrics), "file": name,
                        "accuracy": part.get("accuracy"), "ci_low": part.get("ci_low"),
                        "ci_high": part.get("ci_high"), "n": part.get("n")})
    return out


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


FLIP_FIELDS = ["flip", "pair_id", "item", "prompt", "chosen", "rejected", "baseline_chosen",
               "baseline_rejected", "tuned_chosen", "tuned_rejected"]


def csv_text(rows: Iterable[dict], fields: Sequence[str]) -> str:
    """A spreadsheet-safe CSV: text cells that would run as a formula (= + - @ ...) are guarded
    as `data export --format csv` guards them; numbers stay numbers."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([guard_cell(v) if isinstance(v, str) else "" if v is None else v
                         for v in (row.get(f) for f in fields)])
    return out.getvalue()


def flips_csv(result: dict) -> str:
    """Every flip of a `flip_analysis` result as a guarded CSV (fixed first, then broken)."""
    return csv_text(({"flip": kind, **row} for kind in ("fixed", "broken")
                     for row in result[kind]), FLIP_FIELDS)
