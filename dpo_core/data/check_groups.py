"""An incremental check sync's bookkeeping: the groups (exact texts, normalised pairs, prompts,
MinHash bands) that the changed pairs left or joined, and the re-decision of only those groups'
members, inside the sync's write transaction."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from .check_keys import NEAR, PairKeys, similarity

NAMES = ("identical", "normalized_identical", "empty", "length_imbalance", "chosen_longer",
         "duplicate", "near_duplicate", "contradiction", "leakage", "speaker_tag")


def _ids(values) -> str:
    return json.dumps(sorted(values))


def band_blob(bands: list[int]) -> bytes:
    """A pair's band keys as stored in pair_keys.bands."""
    return np.asarray(bands, dtype=np.int64).tobytes()


def band_list(blob: bytes | None) -> list[int]:
    """The band keys of a stored pair_keys.bands."""
    return [int(b) for b in np.frombuffer(blob or b"", dtype=np.int64)]


class Groups:
    """Collects the groups touched by a sync, then re-decides their checks."""

    def __init__(self, conn, dataset_id: int):
        self.conn, self.dataset_id = conn, dataset_id
        self.exact, self.pairs, self.prompts, self.bands = set(), set(), set(), set()
        self.changed: set[int] = set()
        self.old_tags: list[str] = []
        self.delta: Counter = Counter()  # how each check's count moved
        self.old_facets: dict[int, dict] = {}  # the changed pairs' facets before (if live)
        self.old_signatures: list[bytes] = []  # and their MinHash signatures

    def _query(self, sql: str, *params):
        return self.conn.execute(sql, params).fetchall()

    def leave(self, pair_ids: list[int]) -> None:
        """Forget the changed pairs' keys and results, remembering the groups they were in."""
        ids = _ids(pair_ids)
        self.changed |= set(pair_ids)
        gone = []
        for r in self._query("SELECT * FROM pair_keys WHERE pair_id IN (SELECT value FROM "
                             "json_each(?))", ids):
            self.exact.add(r["exact"])
            self.pairs.add(r["pair_key"])
            self.prompts.add(r["prompt_key"])
            self.old_tags += [r["tag_chosen"], r["tag_rejected"]]
            self.old_facets[r["pair_id"]] = json.loads(r["facets"] or "{}")
            self.old_signatures.append(r["signature"])
            bands = band_list(r["bands"])
            self.bands |= set(bands)
            gone += [(self.dataset_id, b, r["pair_id"]) for b in bands]
        self.conn.executemany("DELETE FROM pair_bands WHERE dataset_id=? AND band=? AND "
                              "pair_id=?", gone)
        self.conn.execute("DELETE FROM pair_keys WHERE pair_id IN (SELECT value FROM "
                          "json_each(?))", (ids,))
        for name in NAMES:  # by primary key, counting what goes
            self.delta[name] -= self.conn.execute(
                "DELETE FROM check_hits WHERE dataset_id=? AND name=? AND pair_id IN (SELECT "
                "value FROM json_each(?))", (self.dataset_id, name, ids)).rowcount

    def join(self, keys: list[PairKeys]) -> None:
        """The changed live pairs' groups and their own failures."""
        for k in keys:
            self.exact.add(k.exact)
            self.pairs.add(k.pair_key)
            self.prompts.add(k.prompt_key)
            self.bands |= set(k.bands)
        hits = [(self.dataset_id, name, k.pair_id) for k in keys for name in k.fails]
        self.conn.executemany("INSERT OR IGNORE INTO check_hits(dataset_id, name, pair_id) "
                              "VALUES(?,?,?)", hits)
        self.delta.update(name for _, name, _ in hits)

    def tag_changes(self, keys: list[PairKeys]) -> dict[str, int]:
        """How the count of each reply tag moves: the old replies out, the new ones in."""
        delta: dict[str, int] = {}
        for tag in self.old_tags:
            delta[tag] = delta.get(tag, 0) - 1
        for k in keys:
            for tag in (k.tag_chosen, k.tag_rejected):
                delta[tag] = delta.get(tag, 0) + 1
        return delta

    def speaker_tags(self, pair_ids: list[int], expected: str) -> None:
        if not expected or not pair_ids:
            return
        self.delta["speaker_tag"] += self.conn.execute(
            "INSERT OR IGNORE INTO check_hits(dataset_id, name, pair_id) SELECT dataset_id, "
            "'speaker_tag', pair_id FROM pair_keys WHERE pair_id IN (SELECT value FROM "
            "json_each(?)) AND (tag_chosen != ? OR tag_rejected != ?)",
            (_ids(pair_ids), expected, expected)).rowcount

    def all_speaker_tags(self, expected: str) -> None:
        """The expected tag changed (the majority moved): every pair is decided again."""
        self.delta["speaker_tag"] -= self.conn.execute(
            "DELETE FROM check_hits WHERE dataset_id=? AND name='speaker_tag'",
            (self.dataset_id,)).rowcount
        if expected:
            self.delta["speaker_tag"] += self.conn.execute(
                "INSERT INTO check_hits(dataset_id, name, pair_id) SELECT dataset_id, "
                "'speaker_tag', pair_id FROM pair_keys WHERE dataset_id=? AND "
                "(tag_chosen != ? OR tag_rejected != ?)",
                (self.dataset_id, expected, expected)).rowcount

    # -- the groups' checks: only what the changed pairs can have changed ---------------------
    def redecide(self) -> None:
        for key in self.exact:
            self._duplicates(key)
        for key in self.pairs - {None}:
            self._all_or_none("contradiction", "pair_key", key, "direction")
        for key in self.prompts:
            self._all_or_none("leakage", "prompt_key", key, "split")
        self._near_duplicates()

    def _changed_in(self, column: str, key) -> list[int]:
        return [r[0] for r in self._query(
            f"SELECT pair_id FROM pair_keys WHERE dataset_id=? AND {column}=? AND pair_id IN "
            "(SELECT value FROM json_each(?))", self.dataset_id, key, _ids(self.changed))]

    def _hit(self, name: str, pair_id: int, failing: bool) -> None:
        """Make one pair's result for a check `failing`."""
        if failing:
            self.delta[name] += self.conn.execute(
                "INSERT OR IGNORE INTO check_hits(dataset_id, name, pair_id) VALUES(?,?,?)",
                (self.dataset_id, name, pair_id)).rowcount
        else:
            self.delta[name] -= self.conn.execute(
                "DELETE FROM check_hits WHERE dataset_id=? AND name=? AND pair_id=?",
                (self.dataset_id, name, pair_id)).rowcount

    def _duplicates(self, key) -> None:
        """All but the first pair of an exact group repeat it: the first may have changed, and
        the changed members need their result; the other members keep theirs."""
        first, unchanged_first = self._query(
            "SELECT MIN(pair_id), MIN(CASE WHEN pair_id IN (SELECT value FROM json_each(?)) "
            "THEN NULL ELSE pair_id END) FROM pair_keys WHERE dataset_id=? AND exact=?",
            _ids(self.changed), self.dataset_id, key)[0]
        if first is None:
            return  # the group is gone
        self._hit("duplicate", first, False)
        if unchanged_first is not None and unchanged_first != first:
            self._hit("duplicate", unchanged_first, True)
        for pair_id in self._changed_in("exact", key):
            self._hit("duplicate", pair_id, pair_id != first)

    def _all_or_none(self, name: str, column: str, key, varies: str) -> None:
        """Checks where a whole group fails together (contradiction: both directions; leakage:
        several splits). Rewritten whole only when the group's verdict flips."""
        now, unchanged = self._query(
            f"SELECT COUNT(DISTINCT {varies}) > 1, MIN(CASE WHEN pair_id IN (SELECT value FROM "
            f"json_each(?)) THEN NULL ELSE pair_id END) FROM pair_keys WHERE dataset_id=? AND "
            f"{column}=?", _ids(self.changed), self.dataset_id, key)[0]
        was = unchanged is not None and bool(self._query(
            "SELECT 1 FROM check_hits WHERE dataset_id=? AND name=? AND pair_id=?",
            self.dataset_id, name, unchanged))
        if unchanged is not None and bool(now) != was:
            members = self._members(column, key)
            self._set(name, members, members if now else [])
            return
        for pair_id in self._changed_in(column, key):
            self._hit(name, pair_id, bool(now))

    def _members(self, column: str, key) -> list[int]:
        return [r[0] for r in self._query(f"SELECT pair_id FROM pair_keys WHERE dataset_id=? AND "
                                          f"{column}=? ORDER BY pair_id", self.dataset_id, key)]

    def _set(self, name: str, members: list[int], failing: list[int]) -> None:
        """The members' results for one check: exactly `failing` fail it."""
        self.delta[name] -= self.conn.execute(
            "DELETE FROM check_hits WHERE dataset_id=? AND name=? AND pair_id IN (SELECT value "
            "FROM json_each(?))", (self.dataset_id, name, _ids(members))).rowcount
        self.conn.executemany("INSERT INTO check_hits(dataset_id, name, pair_id) VALUES(?,?,?)",
                              [(self.dataset_id, name, p) for p in failing])
        self.delta[name] += len(failing)

    def _near_duplicates(self) -> None:
        """A pair is a near-duplicate when an earlier pair with other text is MinHash similar
        (and it is no repeat). The changed pairs are decided in full; a later pair sharing a
        band with them gains the verdict from a changed pair like it, and is decided again in
        full only if it was like a changed pair's old text or its repeat status moved."""
        for pair_id in sorted(self.changed):
            self._hit("near_duplicate", pair_id, self._is_near_duplicate(pair_id))
        rows = self._query(
            "SELECT DISTINCT k.pair_id, k.exact, k.signature, h.pair_id IS NOT NULL AS near, "
            "d.pair_id IS NOT NULL AS repeat FROM pair_bands b JOIN pair_keys k ON "
            "k.pair_id=b.pair_id LEFT JOIN check_hits h ON h.dataset_id=k.dataset_id AND "
            "h.name='near_duplicate' AND h.pair_id=k.pair_id LEFT JOIN check_hits d ON "
            "d.dataset_id=k.dataset_id AND d.name='duplicate' AND d.pair_id=k.pair_id WHERE b.dataset_id=? AND b.band IN (SELECT value FROM json_each(?)) AND b.pair_id>? "
            "AND b.pair_id NOT IN (SELECT value FROM json_each(?)) ORDER BY k.pair_id",
            self.dataset_id, json.dumps(sorted(self.bands)), min(self.changed),
            _ids(self.changed))
        new = {r["pair_id"]: r for r in self._query(
            "SELECT pair_id, exact, signature FROM pair_keys WHERE pair_id IN (SELECT value FROM "
            "json_each(?))", _ids(self.changed))}
        for q in rows:
            if q["exact"] in self.exact or q["near"] and any(
                    similarity(sig, q["signature"]) >= NEAR for sig in self.old_signatures):
                self._hit("near_duplicate", q["pair_id"], self._is_near_duplicate(q["pair_id"]))
            elif not q["near"] and not q["repeat"] and any(
                    p < q["pair_id"] and r["exact"] != q["exact"]
                    and similarity(r["signature"], q["signature"]) >= NEAR
                    for p, r in new.items()):
                self._hit("near_duplicate", q["pair_id"], True)
    def _is_near_duplicate(self, pair_id: int) -> bool:
        """Like an earlier pair with other text, and not a repeat (identical texts have identical
        signatures, so an earlier repeat shares every band)."""
        me = self._query("SELECT exact, signature, bands FROM pair_keys WHERE pair_id=?",
                         pair_id)
        if not me:
            return False  # deleted
        me = me[0]
        rows = self._query(
            "SELECT DISTINCT k.pair_id, k.exact, k.signature FROM pair_bands c JOIN pair_keys k "
            "ON k.pair_id=c.pair_id WHERE c.dataset_id=? AND c.band IN (SELECT value FROM "
            "json_each(?)) AND c.pair_id<?", self.dataset_id, json.dumps(band_list(me["bands"])),
            pair_id)
        if any(r["exact"] == me["exact"] for r in rows):
            return False  # a repeat of an earlier pair: a duplicate, not a near-duplicate
        return any(similarity(r["signature"], me["signature"]) >= NEAR for r in rows)
