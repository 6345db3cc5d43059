"""Datasets and their pairs in the store: create, look up, insert in bulk, read."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..access import require_owner
from ..errors import DataError, NotFoundError
from ..formats import Messages, as_messages
from ..store import Store, dumps, now

PAIR_FIELDS = ("prompt", "chosen", "rejected")
# pairs.message_fields: one bit per field that holds a conversation (JSON text in its column)
MESSAGE_BITS = {"prompt": 1, "chosen": 2, "rejected": 4}
Text = str | list  # a text, or a conversation: a list of {role, content} messages


@dataclass
class Pair:
    """One preference pair as users see it. Each of prompt, chosen and rejected is a text or a
    conversation (TRL's conversational shape: a list of {role, content} messages), and reads
    back as what it was given as."""

    prompt: Text
    chosen: Text
    rejected: Text
    split: str = "train"
    source: str = ""
    tags: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    note: str = ""
    meta: dict = field(default_factory=dict)
    id: int | None = None
    version: int = 1
    deleted: bool = False
    dataset_id: int | None = None

    def as_record(self) -> dict:
        """The TRL shape: {prompt, chosen, rejected}."""
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


@dataclass
class Dataset:
    id: int
    name: str
    created: float
    parent_id: int | None
    recipe: dict
    prompt_format: dict
    description: str = ""


def _dataset_from_row(row) -> Dataset:
    return Dataset(
        id=row["id"], name=row["name"], created=row["created"], parent_id=row["parent_id"],
        recipe=json.loads(row["recipe_json"] or "{}"),
        prompt_format=json.loads(row["prompt_format"] or "{}"),
        description=row["description"],
    )


def pair_from_row(row) -> Pair:
    texts = row_texts(row)
    return Pair(
        id=row["id"], prompt=texts["prompt"], chosen=texts["chosen"],
        rejected=texts["rejected"], split=row["split"], source=row["source"],
        tags=json.loads(row["tags"]), flags=json.loads(row["flags"]), note=row["note"],
        meta=json.loads(row["meta_json"]), version=row["version"], deleted=bool(row["deleted"]),
        dataset_id=row["dataset_id"],
    )


def row_texts(row) -> dict:
    """{prompt, chosen, rejected} of a pairs row, conversations as message lists."""
    try:
        bits = row["message_fields"]
    except IndexError:  # a row selected without the column (or a store before migration 7)
        bits = 0
    return {k: Messages(json.loads(row[k])) if bits & MESSAGE_BITS[k] else row[k]
            for k in PAIR_FIELDS}


def stored_text(value) -> tuple[str, int]:
    """(column text, is a conversation) of a field: a conversation is kept as its JSON, and so
    is text that is exactly the JSON of one (what older code stored)."""
    messages = as_messages(value)
    if messages is not None:
        return dumps(messages), 1
    if not isinstance(value, str):
        raise DataError(f"A pair field holds {type(value).__name__} ({str(value)[:40]!r}).",
                        "Give text, or a list of {role, content} messages with text content.")
    return value, 0


def stored_texts(pair) -> tuple[str, str, str, int]:
    """(prompt, chosen, rejected, message_fields) of a pair as the columns hold them."""
    values, bits = [], 0
    for name in PAIR_FIELDS:
        text, is_messages = stored_text(getattr(pair, name))
        values.append(text)
        bits |= MESSAGE_BITS[name] * is_messages
    return (*values, bits)


def check_new_name(store: Store, name: str) -> str:
    """The name, stripped, if no dataset has it yet (checked again when the dataset is made)."""
    name = (name or "").strip()
    if not name:
        raise DataError("A dataset needs a name.", "Pass --dataset NAME (letters, digits, - and _).")
    if store.query_one("SELECT 1 FROM datasets WHERE name=?", (name,)):
        raise DataError(f"A dataset named '{name}' already exists.",
                        "Choose another name, or delete the existing one first "
                        f"(`python -m dpo_core data delete {name} --yes`).")
    return name


def create_dataset(store: Store, name: str, *, parent_id: int | None = None,
                   recipe: dict | None = None, prompt_format: dict | None = None,
                   description: str = "") -> Dataset:
    """Create an empty dataset; the name must be new."""
    with store.write() as conn:
        name = check_new_name(store, name)
        cur = conn.execute(
            "INSERT INTO datasets(name, created, parent_id, recipe_json, prompt_format, description)"
            " VALUES(?,?,?,?,?,?)",
            (name, now(), parent_id, dumps(recipe or {}), dumps(prompt_format or {}), description),
        )
        dataset_id = cur.lastrowid
    return get_dataset(store, dataset_id)


def get_dataset(store: Store, name_or_id: str | int) -> Dataset:
    """A dataset by name or id; NotFoundError lists the names that exist."""
    if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdigit()):
        row = store.query_one("SELECT * FROM datasets WHERE id=?", (int(name_or_id),))
    else:
        row = None
    if row is None:
        row = store.query_one("SELECT * FROM datasets WHERE name=?", (str(name_or_id),))
    if row is None:
        names = [r["name"] for r in store.query("SELECT name FROM datasets ORDER BY id LIMIT 20")]
        raise NotFoundError(f"No dataset '{name_or_id}' in this workspace.",
                            f"Use one of: {', '.join(names) or '(none yet)'}; or import one with "
                            "`python -m dpo_core data import`.")
    return _dataset_from_row(row)


def list_datasets(store: Store) -> list[dict]:
    """Every dataset with its live pair counts per split."""
    rows = store.query(
        "SELECT d.*, COUNT(p.id) AS n, "
        "SUM(CASE WHEN p.split='train' THEN 1 ELSE 0 END) AS n_train, "
        "SUM(CASE WHEN p.split='eval' THEN 1 ELSE 0 END) AS n_eval "
        "FROM datasets d LEFT JOIN pairs p ON p.dataset_id=d.id AND p.deleted=0 "
        "GROUP BY d.id ORDER BY d.id"
    )
    out = []
    for row in rows:
        ds = _dataset_from_row(row)
        out.append({"id": ds.id, "name": ds.name, "pairs": row["n"], "train": row["n_train"] or 0,
                    "eval": row["n_eval"] or 0, "parent_id": ds.parent_id, "created": ds.created,
                    "recipe": ds.recipe, "prompt_format": ds.prompt_format,
                    "description": ds.description})
    return out


# Text-only pairs leave message_fields at its default, so a store held below migration 7 (a
# test building an old store) still takes them.
INSERT_TEXT_PAIR = ("INSERT INTO pairs(dataset_id, prompt, chosen, rejected, split, source, "
                    "tags, flags, note, meta_json, created, updated) "
                    "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)")
INSERT_PAIR = ("INSERT INTO pairs(dataset_id, prompt, chosen, rejected, split, source, tags, "
               "flags, note, meta_json, created, updated, message_fields) "
               "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)")


def _pair_row(dataset_id: int, p: Pair, t: float) -> tuple:
    prompt, chosen, rejected, bits = stored_texts(p)
    return (dataset_id, prompt, chosen, rejected, p.split, p.source, dumps(p.tags),
            dumps(p.flags), p.note, dumps(p.meta), t, t, bits)


def insert_pairs(store: Store, dataset_id: int, pairs: Iterable[Pair]) -> int:
    """Insert pairs in one transaction (all or nothing); returns how many were written."""
    with store.write() as conn:
        t = now()  # taken inside the write lock: `updated` follows the order of commits
        rows = [_pair_row(dataset_id, p, t) for p in pairs]
        if any(r[-1] for r in rows):
            return conn.executemany(INSERT_PAIR, rows).rowcount
        return conn.executemany(INSERT_TEXT_PAIR, [r[:-1] for r in rows]).rowcount


def insert_pair(store: Store, dataset_id: int, pair: Pair) -> int:
    """Insert one pair; returns its id."""
    with store.write() as conn:
        row = _pair_row(dataset_id, pair, now())
        if row[-1]:
            return conn.execute(INSERT_PAIR, row).lastrowid
        return conn.execute(INSERT_TEXT_PAIR, row[:-1]).lastrowid


def count_pairs(store: Store, dataset_id: int, split: str | None = None) -> int:
    if split is None:
        return store.scalar("SELECT COUNT(*) FROM pairs WHERE dataset_id=? AND deleted=0",
                            (dataset_id,))
    return store.scalar("SELECT COUNT(*) FROM pairs WHERE dataset_id=? AND deleted=0 AND split=?",
                        (dataset_id, split))


def split_counts(store: Store, dataset_id: int) -> dict[str, int]:
    """Live pairs per split, e.g. {"train": 900, "eval": 100}."""
    rows = store.query("SELECT split, COUNT(*) AS n FROM pairs WHERE dataset_id=? AND deleted=0 "
                       "GROUP BY split ORDER BY split", (dataset_id,))
    return {r["split"]: r["n"] for r in rows}


def dataset_names(store: Store) -> list[str]:
    """Every dataset's name, oldest first."""
    return [r["name"] for r in store.query("SELECT name FROM datasets ORDER BY id")]


def dataset_version(store: Store, dataset_id: int, split: str) -> dict:
    """{"n": live pairs, "at": last change} of a split: changes whenever its pairs do."""
    return dict(store.query_one("SELECT count(*) AS n, max(updated) AS at FROM pairs "
                                "WHERE dataset_id=? AND split=? AND deleted=0",
                                (dataset_id, split)))


def dataset_names_by_id(store: Store) -> dict[int, str]:
    """{dataset id: name} of every dataset."""
    return {r["id"]: r["name"] for r in store.query("SELECT id, name FROM datasets")}


def pair_texts(store: Store, ids: list[int]) -> dict[int, dict]:
    """{pair id: {prompt, chosen, rejected}} of the given pairs (deleted ones too)."""
    texts = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for p in store.query(f"SELECT id, prompt, chosen, rejected FROM pairs WHERE id IN "
                             f"({','.join('?' * len(chunk))})", tuple(chunk)):
            texts[p["id"]] = {k: p[k] for k in PAIR_FIELDS}
    return texts


def iter_pairs(store: Store, dataset_id: int, split: str | None = None,
               batch: int = 5000) -> Iterator[Pair]:
    """Live pairs of a dataset in id order, read in keyset batches."""
    last = 0
    while True:
        if split is None:
            rows = store.query("SELECT * FROM pairs WHERE dataset_id=? AND deleted=0 AND id>? "
                               "ORDER BY id LIMIT ?", (dataset_id, last, batch))
        else:
            rows = store.query("SELECT * FROM pairs WHERE dataset_id=? AND deleted=0 AND split=? "
                               "AND id>? ORDER BY id LIMIT ?", (dataset_id, split, last, batch))
        if not rows:
            return
        for row in rows:
            yield pair_from_row(row)
        last = rows[-1]["id"]


def update_recipe(store: Store, dataset_id: int, **changes) -> dict:
    """Set keys of a dataset's recipe (read and written in one transaction); returns it."""
    with store.write() as conn:
        raw = conn.execute("SELECT recipe_json FROM datasets WHERE id=?",
                           (dataset_id,)).fetchone()[0]
        recipe = {**json.loads(raw or "{}"), **changes}
        conn.execute("UPDATE datasets SET recipe_json=? WHERE id=?", (dumps(recipe), dataset_id))
    return recipe


def delete_dataset(store: Store, name_or_id: str | int) -> None:
    """Delete a dataset and its pairs and edit history; datasets made from it keep its name as
    their parent's."""
    require_owner("delete datasets")
    ds = get_dataset(store, name_or_id)
    with store.write() as conn:
        for table in ("pair_keys", "pair_bands", "check_hits", "check_state"):  # checks.py's
            conn.execute(f"DELETE FROM {table} WHERE dataset_id=?", (ds.id,))
        conn.execute("DELETE FROM edits WHERE dataset_id=?", (ds.id,))
        conn.execute("DELETE FROM pairs WHERE dataset_id=?", (ds.id,))
        conn.execute("UPDATE datasets SET parent_id=NULL, recipe_json=json_set(recipe_json, "
                     "'$.parent', coalesce(json_extract(recipe_json, '$.parent'), ?)) "
                     "WHERE parent_id=?", (ds.name, ds.id))
        conn.execute("DELETE FROM datasets WHERE id=?", (ds.id,))


def lineage(store: Store, dataset: str | int) -> list[dict]:
    """The dataset's ancestors, nearest first: {name, id (None once deleted), op}."""
    ds, chain, seen = get_dataset(store, dataset), [], set()
    while ds.id not in seen:
        seen.add(ds.id)
        op = ds.recipe.get("op", "import" if "import" in ds.recipe else "")
        parent_name = ds.recipe.get("parent")
        if ds.parent_id is None:
            if parent_name:
                chain.append({"name": parent_name, "id": None, "op": op})
            return chain
        row = store.query_one("SELECT * FROM datasets WHERE id=?", (ds.parent_id,))
        if row is None:
            return chain + [{"name": parent_name or f"#{ds.parent_id}", "id": None, "op": op}]
        parent = _dataset_from_row(row)
        chain.append({"name": parent.name, "id": parent.id, "op": op})
        ds = parent
    return chain
