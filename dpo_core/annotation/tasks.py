"""Annotation tasks: a dataset (or the pairs of it failing a check), guidelines, k judgments per
pair and the question asked. The task's pairs are frozen when it is made, in the dataset's
order, so every annotator works on the same list."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.checks import CHECKS, check_ids
from ..data.datasets import get_dataset, iter_pairs
from ..errors import DataError, NotFoundError
from ..store import Store, now
from .accounts import Account, judging_accounts, require

MAX_K = 5


@dataclass(frozen=True)
class Task:
    id: int
    name: str
    dataset_id: int | None
    dataset_name: str
    check: str | None
    guidelines: str
    k: int
    ask_strength: bool
    ask_reason: bool
    allow_edit: bool
    status: str  # open | closed
    status_reason: str
    pairs: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _task(store: Store, row) -> Task:
    n = store.scalar("SELECT COUNT(*) FROM task_pairs WHERE task_id=?", (row["id"],))
    return Task(id=row["id"], name=row["name"], dataset_id=row["dataset_id"],
                dataset_name=row["dataset_name"], check=row["check_name"],
                guidelines=row["guidelines"], k=row["k"], ask_strength=bool(row["ask_strength"]),
                ask_reason=bool(row["ask_reason"]), allow_edit=bool(row["allow_edit"]),
                status=row["status"], status_reason=row["status_reason"], pairs=n)


def create_task(store: Store, actor: Account, name: str, dataset: str | int, *, k: int = 2,
                guidelines: str = "", check: str | None = None, ask_strength: bool = False,
                ask_reason: bool = False, allow_edit: bool = False) -> Task:
    """A task over the dataset's live pairs (only those failing `check` when given)."""
    require(actor, "owner", action="create annotation tasks")
    name = (name or "").strip()
    if not name:
        raise DataError("A task needs a name.", "Give it one, e.g. 'length-imbalance-round-1'.")
    if store.query_one("SELECT 1 FROM annotation_tasks WHERE name=?", (name,)):
        raise DataError(f"A task named '{name}' exists.", "Choose another name.")
    if not 1 <= int(k) <= MAX_K:
        raise DataError(f"k is {k}: each pair is judged by 1 to {MAX_K} annotators.",
                        f"Choose k from 1 to {MAX_K}.")
    judges = judging_accounts(store)
    if k > len(judges):
        raise DataError(f"k is {k} but only {len(judges)} account(s) can judge "
                        f"({', '.join(a.name for a in judges)}).",
                        f"Lower k to {len(judges)}, or add annotator accounts first.")
    ds = get_dataset(store, dataset)
    if check is not None and check not in CHECKS:
        raise DataError(f"Unknown check '{check}'.", f"Use one of: {', '.join(CHECKS)}.")
    ids = check_ids(store, ds.id, check) if check else [p.id for p in iter_pairs(store, ds.id)]
    if not ids:
        raise DataError(f"No pair of {ds.name} to annotate"
                        + (f" (none fails the check {check})." if check else "."),
                        "Pick another dataset or check.")
    with store.write() as conn:
        task_id = conn.execute(
            "INSERT INTO annotation_tasks(name, dataset_id, dataset_name, check_name, guidelines,"
            " k, ask_strength, ask_reason, allow_edit, created, created_by) "
            "VALUES(?,?,?,?,?,?,?,?,?,?,?)",
            (name, ds.id, ds.name, check, guidelines or "", int(k), ask_strength, ask_reason,
             allow_edit, now(), actor.name)).lastrowid
        conn.executemany("INSERT INTO task_pairs(task_id, pair_id, position) VALUES(?,?,?)",
                         [(task_id, pid, n) for n, pid in enumerate(ids)])
    return get_task(store, task_id)


def get_task(store: Store, task: str | int) -> Task:
    """A task by name or id. A task whose dataset was deleted is closed here, with the reason."""
    row = store.query_one("SELECT * FROM annotation_tasks WHERE name=? OR id=?",
                          (str(task), int(task) if str(task).isdigit() else -1))
    if row is None:
        names = [r["name"] for r in store.query("SELECT name FROM annotation_tasks ORDER BY id")]
        raise NotFoundError(f"No annotation task '{task}'.",
                            f"Use one of: {', '.join(names) or '(none yet)'}.")
    if row["status"] == "open" and not _dataset_exists(store, row["dataset_id"]):
        with store.write() as conn:
            conn.execute("UPDATE annotation_tasks SET status='closed', status_reason=? "
                         "WHERE id=?", (f"its dataset {row['dataset_name']} was deleted",
                                        row["id"]))
        return get_task(store, row["id"])
    return _task(store, row)


def _dataset_exists(store: Store, dataset_id: int | None) -> bool:
    try:
        return dataset_id is not None and bool(get_dataset(store, int(dataset_id)))
    except NotFoundError:
        return False


def list_tasks(store: Store) -> list[Task]:
    return [get_task(store, r["id"]) for r in
            store.query("SELECT id FROM annotation_tasks ORDER BY id")]


def close_task(store: Store, actor: Account, task: str | int, reason: str = "closed") -> Task:
    require(actor, "owner", action="close annotation tasks")
    t = get_task(store, task)
    with store.write() as conn:
        conn.execute("UPDATE annotation_tasks SET status='closed', status_reason=? WHERE id=?",
                     (reason, t.id))
    return get_task(store, t.id)


def task_pair_ids(store: Store, task: Task) -> list[int]:
    return [r[0] for r in store.query("SELECT pair_id FROM task_pairs WHERE task_id=? "
                                      "ORDER BY position", (task.id,))]


def require_open(task: Task) -> None:
    if task.status != "open":
        raise DataError(f"The task {task.name} is closed ({task.status_reason}).",
                        "Pick an open task, or ask an owner to create a new one.")
