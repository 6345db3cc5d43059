"""Browsing pairs a page at a time, with filters, full-text search and length sorts.

Paging is keyset (`id > after`, or `(length, id) > cursor`), so a page costs the same at 1k or
100k pairs.

Search: words must all appear (in any order); `"two words"` must appear together; `ball*`
matches any word that starts with ball; `fields` limits it to prompt, chosen and/or rejected.
Nothing a user types reaches FTS5's own syntax. `highlight` marks the hits in a text.
"""

from __future__ import annotations

import json
import re
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


SEARCH_FIELDS = ("prompt", "chosen", "rejected")
_TERM = re.compile(r'"([^"]*)"|(\S+)')


def search_terms(text: str) -> list[tuple[str, bool]]:
    """(words, prefix) of a search: quoted phrases stay whole; a trailing * asks for a prefix."""
    terms = []
    for phrase, word in _TERM.findall(text or ""):
        value = phrase if phrase else word
        prefix = not phrase and value.endswith("*") and len(value) > 1
        value = value.rstrip("*") if prefix else value
        words = " ".join(re.findall(r"\w+", value))
        if words:
            terms.append((words, prefix))
    return terms


def fts_query(text: str, fields: list[str] | tuple[str, ...] | None = None) -> str:
    """An FTS5 query for what the user typed: every term quoted (so AND, NEAR, quotes and
    brackets are only text), prefix terms starred, scoped to `fields` if given."""
    parts = [f'"{words}"' + ("*" if prefix else "") for words, prefix in search_terms(text)]
    query = " ".join(parts) or '""'
    wrong = set(fields or ()) - set(SEARCH_FIELDS)
    if wrong:
        raise DataError(f"Unknown search field(s): {', '.join(sorted(wrong))}.",
                        f"Search in any of: {', '.join(SEARCH_FIELDS)}.")
    if fields and set(fields) != set(SEARCH_FIELDS):
        return "{" + " ".join(f for f in SEARCH_FIELDS if f in fields) + "} : (" + query + ")"
    return query


def highlight(text: str, search: str, mark: tuple[str, str] = ("<mark>", "</mark>"),
              escape=None) -> str:
    """`text` with the search's words (whole, or as prefixes) wrapped in `mark`; `escape`
    (e.g. html.escape) is applied to the text between."""
    escape = escape or (lambda t: t)
    patterns = []
    for words, prefix in search_terms(search):
        body = r"\W+".join(re.escape(w) for w in words.split())
        patterns.append(rf"\b{body}" + (r"\w*" if prefix else r"\b"))
    if not patterns:
        return escape(text)
    out, last = [], 0
    for match in re.finditer("|".join(patterns), text, flags=re.IGNORECASE):
        out += [escape(text[last:match.start()]), mark[0], escape(match.group()), mark[1]]
        last = match.end()
    return "".join(out) + escape(text[last:])


def page(store: Store, dataset: str | int, *, after: int | tuple | None = None,
         before: int | tuple | None = None, limit: int = 50, split: str | None = None,
         source: str | None = None, tag: str | None = None, flag: str | None = None,
         search: str | None = None, ids: list[int] | None = None,
         deleted: bool = False, sort: str = "id", reviewed: bool | None = None,
         column: str | None = None, check: str | None = None,
         fields: list[str] | None = None) -> Page:
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
                   deleted=deleted, reviewed=reviewed, column=column, check=check,
                   fields=fields)

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
              search=None, ids=None, deleted=False, after=None, before=None, reviewed=None,
              column=None, check=None, fields=None) -> tuple[str, list[str], list]:
    """FROM clause, WHERE terms and parameters for the filters (pairs aliased as p)."""
    where, params = ["p.dataset_id=?", "p.deleted=?"], [dataset_id, int(deleted)]
    source_sql = "pairs p"
    if search and search.strip():
        source_sql = "pairs_fts f CROSS JOIN pairs p ON p.id=f.rowid"
        _search_filter(store, dataset_id, fts_query(search, fields), deleted, after, before,
                       where, params)
    elif before is not None:
        where.append("p.id<?")
        params.append(before)
    elif after is not None:
        where.append("p.id>?")
        params.append(after)
    terms = {"p.split=?": split, "p.source=?": source,
             "EXISTS (SELECT 1 FROM json_each(p.tags) WHERE value=?)": tag,
             "EXISTS (SELECT 1 FROM json_each(p.flags) WHERE value=?)": flag,
             "p.id IN (SELECT value FROM json_each(?))": None if ids is None else json.dumps(ids),
             # a stored check's failures (data/checks.py keeps them current)
             "p.id IN (SELECT pair_id FROM check_hits WHERE dataset_id=p.dataset_id AND name=?)":
             check}
    for term, value in terms.items():
        if value:
            where.append(term)
            params.append(value)
    if reviewed is not None:
        where.append(f"{'' if reviewed else 'NOT '}EXISTS (SELECT 1 FROM json_each(p.tags) "
                     "WHERE value='reviewed')")
    if column:
        _column_filter(column, where, params)
    return source_sql, where, params


def _search_filter(store: Store, dataset_id: int, match: str, deleted: bool, after, before,
                   where: list[str], params: list) -> None:
    """FTS drives (the CROSS JOIN fixes the order): rowid-ordered matches inside the dataset's
    id range, past the cursor."""
    lo, hi = (store.scalar(f"SELECT {fn}(id) FROM pairs WHERE dataset_id=? AND deleted=?",
                           (dataset_id, int(deleted))) or 0 for fn in ("MIN", "MAX"))
    if before is not None:
        hi = min(hi, before - 1)
    elif after is not None:
        lo = max(lo, after + 1)
    where += ["pairs_fts MATCH ?", "f.rowid BETWEEN ? AND ?"]
    params += [match, lo, hi]


def _column_filter(text: str, where: list[str], params: list) -> None:
    """A test on a column the import kept (meta "columns"): numbers compare as numbers."""
    name, op, value = parse_column_filter(text)
    number = _number(value)
    if op == "=":
        test = "(CAST(value AS TEXT) = ? OR value = ?)"
        args = [value, value if number is None else number]
    elif number is not None:
        test, args = f"value {op} ?", [number]
    else:
        test, args = f"CAST(value AS TEXT) {op} ?", [value]
    where.append(f"EXISTS (SELECT 1 FROM json_each(p.meta_json, '$.columns') WHERE key=? AND "
                 f"{test})")
    params += [name, *args]


_COLUMN_FILTER = re.compile(r"^\s*([^=<>!]+?)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$")


def parse_column_filter(text: str) -> tuple[str, str, str]:
    """'rating>=4' -> ('rating', '>=', '4'): a filter on a column an import kept."""
    match = _COLUMN_FILTER.match(text or "")
    if not match:
        raise DataError(f"Column filter '{text}' is not COLUMN OP VALUE.",
                        "Write e.g. rating>=4, status=ok or score_chosen<5 (operators = != < "
                        "<= > >=).")
    return match.group(1), match.group(2), match.group(3)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
