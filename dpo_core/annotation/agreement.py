"""How much annotators agree, and the disagreements an owner settles.

The statistics come from kept libraries: Cohen's and Fleiss' kappa from statsmodels, Krippendorff's
alpha (nominal, missing judgments allowed) from `krippendorff`. A value that is undefined (all
judgments in one category: no chance agreement to correct for) is None, never NaN.
The majority of a pair is the label most of its judgments gave, when no other label has as many.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np

from ..data.edits import get_pair
from ..errors import DataError, NotFoundError
from ..store import Store, now
from .accounts import Account, require
from .judgments import LABELS
from .tasks import get_task

Table = dict[int, dict[str, str]]  # pair id -> {annotator: label}
READERS = ("owner", "viewer")


def majority(labels: list[str]) -> str | None:
    """The most common label, or None when another is as common (or nothing was judged)."""
    top = Counter(labels).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def _defined(value: float) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 6)


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa of two annotators' labels on the same pairs."""
    from statsmodels.stats.inter_rater import cohens_kappa

    if not a or len(set(a) | set(b)) < 2:
        return None
    table = np.zeros((len(LABELS), len(LABELS)))
    for x, y in zip(a, b, strict=True):
        table[LABELS.index(x), LABELS.index(y)] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return _defined(cohens_kappa(table, return_results=False))


def fleiss(rows: list[list[str]]) -> float | None:
    """Fleiss' kappa over pairs that each have the same number (>= 2) of judgments."""
    from statsmodels.stats.inter_rater import fleiss_kappa

    if not rows or len({x for r in rows for x in r}) < 2:
        return None
    counts = np.array([[r.count(label) for label in LABELS] for r in rows])
    with np.errstate(invalid="ignore", divide="ignore"):
        return _defined(fleiss_kappa(counts, method="fleiss"))


def krippendorff_alpha(table: Table, annotators: list[str]) -> float | None:
    """Krippendorff's alpha (nominal) over every pair, missing judgments allowed."""
    import krippendorff

    pairs = [p for p, by in table.items() if len(by) >= 2]
    if not pairs or len({x for p in pairs for x in table[p].values()}) < 2:
        return None
    data = np.full((len(annotators), len(pairs)), np.nan)
    for j, p in enumerate(pairs):
        for i, name in enumerate(annotators):
            if name in table[p]:
                data[i, j] = LABELS.index(table[p][name])
    with np.errstate(invalid="ignore", divide="ignore"):
        return _defined(krippendorff.alpha(reliability_data=data, value_domain=range(len(LABELS)),
                                           level_of_measurement="nominal"))


def agreement_of(table: Table, k: int) -> dict:
    """Every agreement figure of a judgment table (see the module's docstring)."""
    annotators = sorted({a for by in table.values() for a in by})
    shared = {p: by for p, by in table.items() if len(by) >= 2}
    pairwise = []
    for x, y in combinations(annotators, 2):
        both = [p for p, by in table.items() if x in by and y in by]
        a, b = [table[p][x] for p in both], [table[p][y] for p in both]
        pairwise.append({"annotators": [x, y], "n": len(both),
                         "raw": round(sum(u == v for u, v in zip(a, b, strict=True)) / len(both),
                                      6) if both else None,
                         "cohen_kappa": cohen_kappa(a, b)})
    majorities = {p: majority(list(by.values())) for p, by in shared.items()}
    people = []
    for name in annotators:
        mine = [p for p in shared if name in shared[p] and majorities[p] is not None]
        hits = sum(shared[p][name] == majorities[p] for p in mine)
        people.append({"annotator": name, "judgments": sum(name in by for by in table.values()),
                       "with_majority": round(hits / len(mine), 6) if mine else None,
                       "n": len(mine)})
    complete = [list(by.values()) for by in table.values() if len(by) == k and k >= 2]
    return {"pairs_judged": len(table), "pairs_shared": len(shared),
            "raw": round(sum(len(set(by.values())) == 1 for by in shared.values()) / len(shared),
                         6) if shared else None,
            "fleiss_kappa": fleiss(complete), "krippendorff_alpha":
            krippendorff_alpha(table, annotators), "pairwise": pairwise, "annotators": people}


def judgment_table(store: Store, task_id: int) -> Table:
    table: Table = {}
    for r in store.query("SELECT pair_id, annotator, label FROM judgments WHERE task_id=? "
                         "ORDER BY id", (task_id,)):
        table.setdefault(r["pair_id"], {})[r["annotator"]] = r["label"]
    return table


def task_agreement(store: Store, actor: Account, task: str | int) -> dict:
    """The task's agreement figures (owners and viewers)."""
    require(actor, *READERS, action="see agreement")
    t = get_task(store, task)
    return {"task": t.name, "k": t.k, **agreement_of(judgment_table(store, t.id), t.k)}


def disagreements(store: Store, actor: Account, task: str | int) -> list[dict]:
    """Pairs whose judgments differ and that no owner has decided yet, with each judgment."""
    require(actor, *READERS, action="see the disagreement queue")
    t = get_task(store, task)
    decided = {r[0] for r in store.query("SELECT pair_id FROM adjudications WHERE task_id=?",
                                         (t.id,))}
    rows: dict[int, list[dict]] = {}
    for r in store.query("SELECT pair_id, annotator, label, strength, reason, edit FROM "
                         "judgments WHERE task_id=? ORDER BY pair_id, id", (t.id,)):
        rows.setdefault(r["pair_id"], []).append(dict(r))
    out = []
    for pair_id, judged in rows.items():
        labels = [j["label"] for j in judged]
        if len(labels) < 2 or len(set(labels)) == 1 or pair_id in decided:
            continue
        try:
            pair = get_pair(store, pair_id)
        except NotFoundError:
            continue
        out.append({"pair_id": pair_id, "prompt": pair.prompt, "chosen": pair.chosen,
                    "rejected": pair.rejected, "judgments": judged,
                    "majority": majority(labels)})
    return out


def adjudicate(store: Store, actor: Account, task: str | int, pair_id: int, label: str) -> dict:
    """The owner's decision for a pair; it overrides the majority in the consensus."""
    require(actor, "owner", action="adjudicate")
    t = get_task(store, task)
    if label not in LABELS:
        raise DataError(f"The decision '{label}' is not one of {', '.join(LABELS)}.",
                        f"Decide {', '.join(LABELS)}.")
    if not store.query_one("SELECT 1 FROM task_pairs WHERE task_id=? AND pair_id=?",
                           (t.id, pair_id)):
        raise NotFoundError(f"Pair {pair_id} is not in the task {t.name}.",
                            "Pick a pair from the disagreement queue.")
    with store.write() as conn:
        conn.execute("INSERT INTO adjudications(task_id, pair_id, label, decided_by, at) "
                     "VALUES(?,?,?,?,?) ON CONFLICT(task_id, pair_id) DO UPDATE SET "
                     "label=excluded.label, decided_by=excluded.decided_by, at=excluded.at",
                     (t.id, pair_id, label, actor.name, now()))
    return {"task": t.name, "pair_id": pair_id, "label": label, "decided_by": actor.name}
