"""Browsing pairs a page at a time, with filters, full-text search and length sorts.

Paging is keyset (`id > after`, or `(length, id) > cursor`), so a page costs the same at 1k or
100k pairs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import DataError
from ..store import Store
from .datasets import Pair, get_dataset, pair_from_row

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
