"""Browse pairs a page at a time and change them; every change is an edit record that can be undone.

Paging is keyset (`id > after`), so a page costs the same at 1k or 100k pairs. Each pair has a
version: an edit names the version it was made on, and a stale one is refused as a conflict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import ConflictError, DataError, NotFoundError
from ..store import Store, dumps, now
from .datasets import Pair, get_dataset, pair_from_row

EDITABLE = ("prompt", "chosen", "rejected", "split", "source", "tags", "flags", "note", "meta",
            "deleted")
_COLUMN = {"meta": "meta_json"}
_JSON_FIELDS = ("tags", "flags", "meta")


# Sort keys: "id" or a length in characters; a leading "-" sorts descending.
SORTS = {"id": "p.id", "prompt_len": "length(p.prompt)", "chosen_len": "length(p.chosen)",
         "rejected_len": "length(p.rejected)"}


@dataclass
class Page:
    pairs: list[Pair]
    first_id: int | None
    last_id: int | None
    has_more: bool
    first_key: int | tuple | None = None  # cursor for `before=` (an id, or (length, id))
    last_key: int | tuple | None = None  # cursor for `after=`


def fts_query(text: str) -> str:
    """Quote every word so user text never reaches FTS5 syntax (AND, NEAR, quotes, '*')."""
    words = text.split()
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def page(store: Store, dataset: str | int, *, after: int | tuple | None = None,
         before: int | tuple | None = None, limit: int = 50, split: str | None = None,
         source: str | None = None, tag: str | None = None, flag: str | None = None,
         search: str | None = None, ids: list[int] | None = None,
         deleted: bool = False, sort: str = "id") -> Page:
    """One page of pairs in `sort` order, after (or before) a cursor, with optional filters.

    The cursor is an id for the id sorts and (length, id) for length sorts: keyset paging on
    (sort value, id) never skips or repeats a pair. A search in id order is driven from the
    full-text index in rowid order, bounded to the dataset's id range, so it stops after
    `limit + 1` hits instead of collecting every match.
    """
    ds = get_dataset(store, dataset)
    field, desc = sort.lstrip("-"), sort.startswith("-")
    if field not in SORTS:
        raise DataError(f"Unknown sort '{sort}'.", f"Use one of {', '.join(SORTS)} "
                        "(a leading '-' for descending).")
    backward = before is not None
    filters = dict(split=split, source=source, tag=tag, flag=flag, search=search, ids=ids,
                   deleted=deleted)

    def select(source_sql: str, where: list[str], params: list, order_by: str, n: int):
        return store.query(f"SELECT p.*, {SORTS[field]} AS sort_value FROM {source_sql} "
                           f"WHERE {' AND '.join(where)} ORDER BY {order_by} LIMIT ?",
                           (*params, n))

    if field == "id":  # descending "after x" is the id range below x, as "before x" ascending
        cursor = {("before" if backward != desc else "after"): before if backward else after}
        source_sql, where, params = _filtered(store, ds.id, **filters, **cursor)
        key = "f.rowid" if source_sql.startswith("pairs_fts") else "p.id"
        rows = select(source_sql, where, params,
                      f"{key} {'DESC' if backward != desc else 'ASC'}", limit + 1)
    else:
        source_sql, where, params = _filtered(store, ds.id, **filters)
        expr, cursor = SORTS[field], before if backward else after
        direction = "DESC" if backward != desc else "ASC"
        order_by = f"{expr} {direction}, p.id {direction}"
        if cursor is None:
            rows = select(source_sql, where, params, order_by, limit + 1)
        else:  # beyond (length, id): the rest of the cursor's length, then the lengths past
            # it; two exact seeks in the length index (a row-value comparison scans up to it)
            op, (length, pid) = ("<" if backward != desc else ">"), map(int, cursor)
            rows = select(source_sql, [*where, f"{expr} = ?", f"p.id {op} ?"],
                          [*params, length, pid], f"p.id {direction}", limit + 1)
            if len(rows) <= limit:
                rows += select(source_sql, [*where, f"{expr} {op} ?"], [*params, length],
                               order_by, limit + 1 - len(rows))
    has_more = len(rows) > limit
    rows = rows[:limit][::-1] if backward else rows[:limit]
    pairs = [pair_from_row(r) for r in rows]
    # The key comes from SQL's own length() (which differs from len() on text holding NUL).
    keys = [r["id"] if field == "id" else (r["sort_value"], r["id"]) for r in rows]
    return Page(pairs, pairs[0].id if pairs else None, pairs[-1].id if pairs else None, has_more,
                keys[0] if keys else None, keys[-1] if keys else None)


def count_matches(store: Store, dataset: str | int, *, cap: int = 1000, **filters) -> int:
    """How many pairs match the filters, counting at most `cap + 1` (show `cap`+ beyond cap)."""
    ds = get_dataset(store, dataset)
    source_sql, where, params = _filtered(store, ds.id, **filters)
    return store.scalar(f"SELECT COUNT(*) FROM (SELECT 1 FROM {source_sql} WHERE "
                        f"{' AND '.join(where)} LIMIT ?)", (*params, cap + 1))


def _filtered(store: Store, dataset_id: int, *, split=None, source=None, tag=None, flag=None,
              search=None, ids=None, deleted=False, after=None,
              before=None) -> tuple[str, list[str], list]:
    """FROM clause, WHERE terms and parameters for the filters (pairs aliased as p)."""
    where, params = ["p.dataset_id=?", "p.deleted=?"], [dataset_id, int(deleted)]
    source_sql = "pairs p"
    if search and search.strip():
        lo, hi = (store.scalar(f"SELECT {fn}(id) FROM pairs WHERE dataset_id=? AND deleted=?",
                               (dataset_id, int(deleted))) or 0 for fn in ("MIN", "MAX"))
        if before is not None:
            hi = min(hi, before - 1)
        elif after is not None:
            lo = max(lo, after + 1)
        # FTS drives (CROSS JOIN fixes the order): rowid-ordered matches inside the id range.
        source_sql = "pairs_fts f CROSS JOIN pairs p ON p.id=f.rowid"
        where += ["pairs_fts MATCH ?", "f.rowid BETWEEN ? AND ?"]
        params += [fts_query(search), lo, hi]
    elif before is not None:
        where.append("p.id<?")
        params.append(before)
    elif after is not None:
        where.append("p.id>?")
        params.append(after)
    for column, value in (("split", split), ("source", source)):
        if value:
            where.append(f"p.{column}=?")
            params.append(value)
    for column, value in (("tags", tag), ("flags", flag)):
        if value:
            where.append(f"EXISTS (SELECT 1 FROM json_each(p.{column}) WHERE value=?)")
            params.append(value)
    if ids is not None:
        where.append("p.id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(ids))
    return source_sql, where, params


def get_pair(store: Store, pair_id: int) -> Pair:
    row = store.query_one("SELECT * FROM pairs WHERE id=?", (pair_id,))
    if row is None:
        raise NotFoundError(f"No pair {pair_id}.", "Reload the page; it may have been removed.")
    return pair_from_row(row)


def _values(pair: Pair, fields) -> dict:
    return {f: getattr(pair, f) for f in fields}


def update_pair(store: Store, pair_id: int, changes: dict, expected_version: int,
                actor: str = "", action: str = "edit") -> Pair:
    """Apply `changes` if the pair is still at `expected_version`; record the edit."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise DataError(f"Cannot edit field(s) {', '.join(sorted(unknown))}.",
                        f"Editable fields: {', '.join(EDITABLE)}.")
    for key in ("prompt", "chosen", "rejected"):
        if key in changes and not isinstance(changes[key], str):
            raise DataError(f"Field {key} must be text.", "Enter text.")
    with store.write() as conn:
        current = get_pair(store, pair_id)
        if current.version != expected_version:
            raise ConflictError(
                f"Pair {pair_id} was changed elsewhere (you edited version {expected_version}, "
                f"it is now at version {current.version}); nothing was saved.",
                "Reload the pair, compare both versions, and apply your change again.",
                current={"current": _values(current, EDITABLE) | {"version": current.version},
                         "yours": changes, "your_version": expected_version})
        _apply(conn, current, changes, action, actor)
    return get_pair(store, pair_id)


def _apply(conn, current: Pair, changes: dict, action: str, actor: str) -> int:
    """Write changes and their edit record; returns the edit id."""
    before = _values(current, changes)
    sets, params = [], []
    for key, value in changes.items():
        sets.append(f"{_COLUMN.get(key, key)}=?")
        params.append(dumps(value) if key in _JSON_FIELDS else
                      int(value) if key == "deleted" else value)
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


def swap_pair(store: Store, pair_id: int, expected_version: int, actor: str = "") -> Pair:
    """Exchange chosen and rejected."""
    p = get_pair(store, pair_id)
    return update_pair(store, pair_id, {"chosen": p.rejected, "rejected": p.chosen},
                       expected_version, actor, action="swap")


def delete_pair(store: Store, pair_id: int, expected_version: int, actor: str = "") -> Pair:
    return update_pair(store, pair_id, {"deleted": True}, expected_version, actor, "delete")


def restore_pair(store: Store, pair_id: int, expected_version: int, actor: str = "") -> Pair:
    return update_pair(store, pair_id, {"deleted": False}, expected_version, actor, "restore")


def mark_pair(store: Store, pair_id: int, expected_version: int, *, tag: str | None = None,
              flag: str | None = None, note: str | None = None, remove: bool = False,
              actor: str = "") -> Pair:
    """Add (or remove) a tag or flag, or set the note."""
    p = get_pair(store, pair_id)
    changes: dict = {}
    for key, value in (("tags", tag), ("flags", flag)):
        if value:
            items = [v for v in getattr(p, key) if v != value]
            changes[key] = items if remove else items + [value]
    if note is not None:
        changes["note"] = note
    return update_pair(store, pair_id, changes, expected_version, actor, action="mark")


def add_pair(store: Store, dataset: str | int, pair: Pair, actor: str = "") -> Pair:
    """Add one pair to a dataset (recorded, so undo removes it)."""
    ds = get_dataset(store, dataset)
    for key in ("prompt", "chosen", "rejected"):
        if not isinstance(getattr(pair, key), str) or not getattr(pair, key).strip():
            raise DataError(f"The new pair's {key} is empty.", "Fill in prompt, chosen and "
                            "rejected.")
    t = now()
    with store.write() as conn:
        cur = conn.execute(
            "INSERT INTO pairs(dataset_id, prompt, chosen, rejected, split, source, tags, flags,"
            " note, meta_json, created, updated) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
            (ds.id, pair.prompt, pair.chosen, pair.rejected, pair.split, pair.source,
             dumps(pair.tags), dumps(pair.flags), pair.note, dumps(pair.meta), t, t))
        pair_id = cur.lastrowid
        conn.execute("INSERT INTO edits(pair_id, dataset_id, at, actor, action, version,"
                     " before_json, after_json) VALUES(?,?,?,?,'add',1,?,?)",
                     (pair_id, ds.id, t, actor, dumps({"deleted": True}),
                      dumps(pair.as_record())))
    return get_pair(store, pair_id)


def undo(store: Store, edit_id: int | None = None, *, dataset: str | int | None = None,
         actor: str = "") -> Pair:
    """Undo one edit (or the last live edit of a dataset) by writing its before-values back."""
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
        _apply(conn, current, json.loads(row["before_json"]), "undo", actor)
        conn.execute("UPDATE edits SET undone=1 WHERE id=?", (row["id"],))
    return get_pair(store, row["pair_id"])


def history(store: Store, pair_id: int) -> list[dict]:
    """Every edit of a pair, oldest first."""
    rows = store.query("SELECT * FROM edits WHERE pair_id=? ORDER BY id", (pair_id,))
    return [{"id": r["id"], "at": r["at"], "actor": r["actor"], "action": r["action"],
             "version": r["version"], "before": json.loads(r["before_json"] or "{}"),
             "after": json.loads(r["after_json"] or "{}"), "undone": bool(r["undone"])}
            for r in rows]
