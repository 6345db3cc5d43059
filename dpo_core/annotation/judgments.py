"""The review queue of a task and the judgments made in it.

An annotator is shown one pair at a time as sides A and B, in an order fixed per annotator and
pair (a hash, so a reload shows the same order) and without the labels, so the current label
does not lead the judgment. A pair goes to annotators until it has its k judgments: the queue
claims a pair for the annotator it is shown to, a submit is one transaction that counts again,
and an annotator sees no one else's judgment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..data.datasets import Text
from ..data.edits import get_pair
from ..errors import ConflictError, DataError, NotFoundError
from ..store import Store, now
from .accounts import JUDGING_ROLES, Account, require
from .tasks import Task, get_task, require_open

LABELS = ("chosen", "rejected", "tie", "both_bad")  # in the dataset's terms
CHOICES = ("A", "B", "tie", "both_bad")  # in the annotator's terms
STRENGTHS = ("clearly", "slightly")
CLAIM_S = 30 * 60  # a pair shown to an annotator is held for them this long


@dataclass(frozen=True)
class Item:
    """One pair as an annotator sees it: no label, sides in the annotator's order."""

    task: str
    pair_id: int
    prompt: Text
    a: Text
    b: Text
    guidelines: str
    done: int  # pairs this annotator has judged in the task
    total: int  # pairs of the task


def sides_swapped(task_id: int, account_id: int, pair_id: int) -> bool:
    """True when side A shows the rejected reply, for this annotator and pair (stable)."""
    digest = hashlib.sha256(f"{task_id}:{account_id}:{pair_id}".encode()).digest()
    return bool(digest[0] & 1)


def choice_label(choice: str, swapped: bool) -> str:
    """The annotator's A/B answer in the dataset's terms (chosen / rejected / tie / both_bad)."""
    if choice not in CHOICES:
        raise DataError(f"The answer '{choice}' is not one of {', '.join(CHOICES)}.",
                        "Answer A, B, tie or both_bad.")
    if choice in ("tie", "both_bad"):
        return choice
    return "chosen" if (choice == "A") != swapped else "rejected"


def next_item(store: Store, actor: Account, task: str | int) -> Item | None:
    """The pair this annotator should judge next (None: nothing left for them). A pair they
    were shown and did not judge comes back first, so a closed browser loses nothing."""
    require(actor, *JUDGING_ROLES, action="judge pairs")
    t = get_task(store, task)
    require_open(t)
    with store.write() as conn:
        t_now = now()
        conn.execute("DELETE FROM task_claims WHERE until<=?", (t_now,))
        for pair_id in _candidates(conn, t, actor, t_now):
            try:
                pair = get_pair(store, pair_id)
            except NotFoundError:
                continue
            if pair.deleted:
                continue
            conn.execute("INSERT INTO task_claims(task_id, pair_id, account_id, until) "
                         "VALUES(?,?,?,?) ON CONFLICT(task_id, pair_id, account_id) DO UPDATE SET "
                         "until=excluded.until",
                         (t.id, pair_id, actor.id, t_now + CLAIM_S))
            swapped = sides_swapped(t.id, actor.id, pair_id)
            a, b = (pair.rejected, pair.chosen) if swapped else (pair.chosen, pair.rejected)
            return Item(task=t.name, pair_id=pair_id, prompt=pair.prompt, a=a, b=b,
                        guidelines=t.guidelines, done=_done(conn, t, actor), total=t.pairs)
    return None


def _candidates(conn, t: Task, actor: Account, t_now: float) -> list[int]:
    """The actor's own live claim first, then pairs in task order that are short of k counting
    judgments and others' live claims, and that the actor has not judged."""
    return [r[0] for r in conn.execute(
        "SELECT tp.pair_id FROM task_pairs tp WHERE tp.task_id=:t AND NOT EXISTS (SELECT 1 FROM "
        "judgments j WHERE j.task_id=:t AND j.pair_id=tp.pair_id AND j.account_id=:a) AND ("
        "EXISTS (SELECT 1 FROM task_claims c WHERE c.task_id=:t AND c.pair_id=tp.pair_id AND "
        "c.account_id=:a) OR (SELECT COUNT(*) FROM judgments j WHERE j.task_id=:t AND "
        "j.pair_id=tp.pair_id) + (SELECT COUNT(*) FROM task_claims c WHERE c.task_id=:t AND "
        "c.pair_id=tp.pair_id AND c.account_id!=:a AND c.until>:now) < :k) ORDER BY EXISTS ("
        "SELECT 1 FROM task_claims c WHERE c.task_id=:t AND c.pair_id=tp.pair_id AND "
        "c.account_id=:a) DESC, tp.position",
        {"t": t.id, "a": actor.id, "now": t_now, "k": t.k}).fetchall()]


def _done(conn, t: Task, actor: Account) -> int:
    return conn.execute("SELECT COUNT(*) FROM judgments WHERE task_id=? AND account_id=?",
                        (t.id, actor.id)).fetchone()[0]


def judge(store: Store, actor: Account, task: str | int, pair_id: int, choice: str, *,
          strength: str | None = None, reason: str = "", edit: str | None = None) -> dict:
    """Save one judgment (A, B, tie or both_bad, as the actor was shown the pair). Refused when
    the actor judged the pair already or the pair has its k judgments."""
    require(actor, *JUDGING_ROLES, action="judge pairs")
    t = get_task(store, task)
    require_open(t)
    swapped = sides_swapped(t.id, actor.id, pair_id)
    label = choice_label(choice, swapped)
    if strength is not None and strength not in STRENGTHS:
        raise DataError(f"Strength '{strength}' is unknown.", f"Use {' or '.join(STRENGTHS)}.")
    if edit is not None and not (t.allow_edit and choice in ("A", "B")):
        raise DataError("This judgment cannot carry an edit.", "Edit only the better reply (A "
                        "or B), in a task that allows edits.")
    with store.write() as conn:
        if not conn.execute("SELECT 1 FROM task_pairs WHERE task_id=? AND pair_id=?",
                            (t.id, pair_id)).fetchone():
            raise NotFoundError(f"Pair {pair_id} is not in the task {t.name}.",
                                "Take the pair the queue shows.")
        mine = conn.execute("SELECT 1 FROM judgments WHERE task_id=? AND pair_id=? AND "
                            "account_id=?", (t.id, pair_id, actor.id)).fetchone()
        if mine:
            raise ConflictError(f"{actor.name} already judged pair {pair_id} in {t.name}.",
                                "Go on with the next pair.")
        count = conn.execute("SELECT COUNT(*) FROM judgments WHERE task_id=? AND pair_id=?",
                             (t.id, pair_id)).fetchone()[0]
        if count >= t.k:
            raise ConflictError(f"Pair {pair_id} already has its {t.k} judgment(s).",
                                "Nothing was saved; go on with the next pair.")
        conn.execute(
            "INSERT INTO judgments(task_id, pair_id, account_id, annotator, label, strength, "
            "reason, edit, swapped, at) VALUES(?,?,?,?,?,?,?,?,?,?)",
            (t.id, pair_id, actor.id, actor.name, label, strength if t.ask_strength else None,
             (reason or "") if t.ask_reason else "", edit, swapped, now()))
        conn.execute("DELETE FROM task_claims WHERE task_id=? AND pair_id=? AND account_id=?",
                     (t.id, pair_id, actor.id))
    return {"task": t.name, "pair_id": pair_id, "annotator": actor.name, "choice": choice}


def read_judgments(store: Store, actor: Account, task: str | int) -> list[dict]:
    """The task's judgments in the dataset's terms; an annotator gets only their own."""
    t = get_task(store, task)
    sql = ("SELECT pair_id, account_id, annotator, label, strength, reason, edit, at FROM "
           "judgments WHERE task_id=?")
    params: tuple = (t.id,)
    if actor.role not in ("owner", "viewer"):
        sql, params = sql + " AND account_id=?", (t.id, actor.id)
    return [dict(r) for r in store.query(sql + " ORDER BY pair_id, id", params)]


def progress(store: Store, actor: Account, task: str | int) -> dict:
    """Pairs, pairs with their k judgments, the actor's own count and, for owners and viewers,
    judgments per annotator."""
    t = get_task(store, task)
    counts = store.query("SELECT pair_id, COUNT(*) AS n FROM judgments WHERE task_id=? "
                         "GROUP BY pair_id", (t.id,))
    out = {"task": t.name, "pairs": t.pairs, "k": t.k,
           "complete": sum(1 for r in counts if r["n"] >= t.k),
           "mine": store.scalar("SELECT COUNT(*) FROM judgments WHERE task_id=? AND "
                                "account_id=?", (t.id, actor.id))}
    if actor.role in ("owner", "viewer"):
        out["judgments"] = sum(r["n"] for r in counts)
        out["per_annotator"] = {r["annotator"]: r["n"] for r in store.query(
            "SELECT annotator, COUNT(*) AS n FROM judgments WHERE task_id=? GROUP BY annotator "
            "ORDER BY annotator", (t.id,))}
    return out
