"""Changing pairs: every change is an edit record that can be undone.

Each pair has a version: an edit names the version it was made on, and a stale one is refused as
a conflict (both versions attached), never a silent overwrite.
"""

from __future__ import annotations

import json

from ..access import require_owner
from ..errors import ConflictError, DataError, NotFoundError
from ..formats import as_messages
from ..store import Store, dumps, now
from .datasets import (
    MESSAGE_BITS,
    PAIR_FIELDS,
    Pair,
    get_dataset,
    insert_pair,
    pair_from_row,
    stored_text,
)

EDITABLE = ("prompt", "chosen", "rejected", "split", "source", "tags", "flags", "note", "meta",
            "deleted")
_COLUMN = {"meta": "meta_json"}
_JSON_FIELDS = ("tags", "flags", "meta")


def get_pair(store: Store, pair_id: int) -> Pair:
    row = store.query_one("SELECT * FROM pairs WHERE id=?", (pair_id,))
    if row is None:
        raise NotFoundError(f"No pair {pair_id}.", "Reload the page; it may have been removed.")
    return pair_from_row(row)


def _values(pair: Pair, fields) -> dict:
    return {f: getattr(pair, f) for f in fields}


def check_dataset(pair: Pair, dataset_id: int | None) -> None:
    """Refuse an action aimed at a pair of another dataset than the one the user has open."""
    if dataset_id is not None and pair.dataset_id != dataset_id:
        raise DataError(f"Pair {pair.id} belongs to another dataset than the one shown "
                        f"(dataset {pair.dataset_id}, not {dataset_id}); nothing was changed.",
                        "Reload the page and pick the pair again.")


def update_pair(store: Store, pair_id: int, changes: dict, expected_version: int,
                actor: str = "", action: str = "edit", dataset_id: int | None = None) -> Pair:
    """Apply `changes` if the pair is still at `expected_version` (and, when `dataset_id` is
    given, still belongs to that dataset); record the edit."""
    return edit_pair(store, pair_id, changes, expected_version, actor, action, dataset_id)[0]


def edit_pair(store: Store, pair_id: int, changes: dict, expected_version: int,
              actor: str = "", action: str = "edit",
              dataset_id: int | None = None) -> tuple[Pair, int | None]:
    """`update_pair` that also gives the id of the edit it recorded (None: nothing changed)."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise DataError(f"Cannot edit field(s) {', '.join(sorted(unknown))}.",
                        f"Editable fields: {', '.join(EDITABLE)}.")
    for key in PAIR_FIELDS:
        value = changes.get(key, "")
        if not isinstance(value, str) and as_messages(value) is None:
            raise DataError(f"Pair {pair_id}: field {key} must be text or a list of "
                            "{role, content} messages.", "Enter text, or edit the messages.")
    with store.write() as conn:
        current = get_pair(store, pair_id)
        check_dataset(current, dataset_id)
        if not changes:
            return current, None
        if current.version != expected_version:
            raise ConflictError(
                f"Pair {pair_id} was changed elsewhere (you edited version {expected_version}, "
                f"it is now at version {current.version}); nothing was saved.",
                "Reload the pair, compare both versions, and apply your change again.",
                current={"current": _values(current, EDITABLE) | {"version": current.version},
                         "yours": changes, "your_version": expected_version})
        edit_id = _apply(conn, current, changes, action, actor)
    return get_pair(store, pair_id), edit_id


def _apply(conn, current: Pair, changes: dict, action: str, actor: str) -> int:
    """Write changes and their edit record; returns the edit id."""
    before = _values(current, changes)
    sets, params = [], []
    bits = sum(b for k, b in MESSAGE_BITS.items() if isinstance(getattr(current, k), list))
    for key, value in changes.items():
        if key in MESSAGE_BITS:  # a conversation is stored as its JSON, marked by its bit
            value, is_messages = stored_text(value)
            bits = bits & ~MESSAGE_BITS[key] | MESSAGE_BITS[key] * is_messages
        sets.append(f"{_COLUMN.get(key, key)}=?")
        params.append(dumps(value) if key in _JSON_FIELDS else
                      int(value) if key == "deleted" else value)
    if any(k in MESSAGE_BITS for k in changes):
        sets.append("message_fields=?")
        params.append(bits)
    version = current.version + 1
    conn.execute(f"UPDATE pairs SET {', '.join(sets)}, version=?, updated=? WHERE id=?",
                 (*params, version, now(), current.id))
    dataset_id = conn.execute("SELECT dataset_id FROM pairs WHERE id=?",
                              (current.id,)).fetchone()[0]
    cur = conn.execute(
        "INSERT INTO edits(pair_id, dataset_id, at, actor, action, version, before_json,"
        " after_json) VALUES(?,?,?,?,?,?,?,?)",
        (current.id, dataset_id, now(), actor, action, version, dumps(before), dumps(changes)))
    return cur.lastrowid


def swap_pair(store: Store, pair_id: int, expected_version: int, actor: str = "",
              dataset_id: int | None = None) -> Pair:
    """Exchange chosen and rejected."""
    p = get_pair(store, pair_id)
    return update_pair(store, pair_id, {"chosen": p.rejected, "rejected": p.chosen},
                       expected_version, actor, action="swap", dataset_id=dataset_id)


def delete_pair(store: Store, pair_id: int, expected_version: int, actor: str = "",
                dataset_id: int | None = None) -> Pair:
    require_owner("delete pairs")
    return update_pair(store, pair_id, {"deleted": True}, expected_version, actor, "delete",
                       dataset_id)


def restore_pair(store: Store, pair_id: int, expected_version: int, actor: str = "",
                 dataset_id: int | None = None) -> Pair:
    return update_pair(store, pair_id, {"deleted": False}, expected_version, actor, "restore",
                       dataset_id)


def mark_pair(store: Store, pair_id: int, expected_version: int, *, tag: str | None = None,
              flag: str | None = None, note: str | None = None, remove: bool = False,
              actor: str = "", dataset_id: int | None = None) -> Pair:
    """Add (or remove) a tag or flag, or set the note."""
    p = get_pair(store, pair_id)
    changes: dict = {}
    for key, value in (("tags", tag), ("flags", flag)):
        if value:
            items = [v for v in getattr(p, key) if v != value]
            changes[key] = items if remove else items + [value]
    if note is not None:
        changes["note"] = note
    return update_pair(store, pair_id, changes, expected_version, actor, action="mark",
                       dataset_id=dataset_id)


def add_pair(store: Store, dataset: str | int, pair: Pair, actor: str = "") -> Pair:
    """Add one pair to a dataset (recorded, so undo removes it)."""
    ds = get_dataset(store, dataset)
    for key in PAIR_FIELDS:
        value = getattr(pair, key)
        if not (as_messages(value) or isinstance(value, str) and value.strip()):
            raise DataError(f"The new pair's {key} is empty.", "Fill in prompt, chosen and "
                            "rejected.")
    with store.write() as conn:
        pair_id = insert_pair(store, ds.id, pair)
        conn.execute("INSERT INTO edits(pair_id, dataset_id, at, actor, action, version,"
                     " before_json, after_json) VALUES(?,?,?,?,'add',1,?,?)",
                     (pair_id, ds.id, now(), actor, dumps({"deleted": True}),
                      dumps(pair.as_record())))
    return get_pair(store, pair_id)


def undo(store: Store, edit_id: int | None = None, *, dataset: str | int | None = None,
         actor: str = "", if_latest: bool = False) -> Pair:
    """Undo one edit (or the last live edit of a dataset) by writing its before-values back.
    `if_latest` refuses when the pair changed after that edit (its later change would go)."""
    with store.write() as conn:
        if edit_id is None:
            ds = get_dataset(store, dataset)
            row = conn.execute("SELECT * FROM edits WHERE dataset_id=? AND undone=0 AND "
                               "action!='undo' ORDER BY id DESC LIMIT 1", (ds.id,)).fetchone()
        else:
            row = conn.execute("SELECT * FROM edits WHERE id=?", (edit_id,)).fetchone()
        if row is None:
            raise NotFoundError("There is no edit to undo.", "Make an edit first.")
        if row["undone"] or row["action"] == "undo":
            raise DataError(f"Edit {row['id']} is already undone.", "Pick another edit.")
        current = get_pair(store, row["pair_id"])
        if if_latest and current.version != row["version"]:
            raise ConflictError(f"Pair {current.id} changed after that edit (it is at version "
                                f"{current.version}, the edit made {row['version']}); nothing "
                                "was undone.", "Open the pair's history and undo from there.",
                                current={"current": _values(current, EDITABLE) |
                                         {"version": current.version}, "yours": {},
                                         "your_version": row["version"]})
        _apply(conn, current, json.loads(row["before_json"]), "undo", actor)
        conn.execute("UPDATE edits SET undone=1 WHERE id=?", (row["id"],))
    return get_pair(store, row["pair_id"])


def last_edit_id(store: Store, dataset_id: int) -> int:
    """The latest edit id of a dataset (0 before any): changes whenever its pairs change."""
    return store.scalar("SELECT COALESCE(MAX(id), 0) FROM edits WHERE dataset_id=?",
                        (dataset_id,))


def history(store: Store, pair_id: int) -> list[dict]:
    """Every edit of a pair, oldest first."""
    rows = store.query("SELECT * FROM edits WHERE pair_id=? ORDER BY id", (pair_id,))
    return [{"id": r["id"], "at": r["at"], "actor": r["actor"], "action": r["action"],
             "version": r["version"], "before": json.loads(r["before_json"] or "{}"),
             "after": json.loads(r["after_json"] or "{}"), "undone": bool(r["undone"])}
            for r in rows]
