"""Reviewing pairs one at a time: a verdict (keep, swap, flag, skip) is one edit that one undo
takes back, and review progress lives in the store (the "reviewed" tag), so it survives the
session and is shared by everyone reviewing the dataset."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError
from ..store import Store
from .browse import count_matches
from .datasets import PAIR_FIELDS, Pair
from .edits import edit_pair, get_pair, undo

VERDICTS = ("keep", "swap", "flag", "skip")
REVIEWED = "reviewed"  # the tag a verdict leaves
FLAG = "review"  # the flag of a pair the reviewer wants looked at again


@dataclass
class Verdict:
    """What a verdict did: the pair after it, the edit to undo (None for skip) and a sentence
    naming the pair."""

    pair: Pair
    edit_id: int | None
    message: str


def review_pair(store: Store, pair_id: int, verdict: str, *, seen: dict, dataset_id: int,
                actor: str = "review") -> Verdict:
    """Apply `verdict` to the pair the reviewer saw (`seen`: its prompt/chosen/rejected and
    version). Refused if the pair belongs to another dataset, or if its text changed since."""
    if verdict not in VERDICTS:
        raise DataError(f"Unknown verdict '{verdict}'.", f"Use one of: {', '.join(VERDICTS)}.")
    current = get_pair(store, pair_id)
    same = all(getattr(current, f) == seen.get(f) for f in PAIR_FIELDS)
    version = current.version if same else seen.get("version", -1)  # changed text: a conflict
    if verdict == "skip":
        return Verdict(current, None, f"Skipped pair {pair_id}.")
    tags = [t for t in current.tags if t != REVIEWED] + [REVIEWED]
    changes: dict = {"tags": tags}
    if verdict == "swap":
        changes |= {"chosen": current.rejected, "rejected": current.chosen}
    if verdict == "flag":
        changes["flags"] = [f for f in current.flags if f != FLAG] + [FLAG]
    pair, edit_id = edit_pair(store, pair_id, changes, version, actor, verdict, dataset_id)
    done = {"keep": "Kept", "swap": "Swapped chosen and rejected of", "flag": "Flagged"}[verdict]
    return Verdict(pair, edit_id, f"{done} pair {pair_id} (tagged {REVIEWED}).")


def undo_verdict(store: Store, edit_id: int, pair_id: int, dataset_id: int) -> Pair:
    """Take a verdict back, unless the pair changed after it (then nothing is undone)."""
    pair = get_pair(store, pair_id)
    if pair.dataset_id != dataset_id:
        raise DataError(f"Pair {pair_id} is not in the dataset shown; nothing was undone.",
                        "Open its dataset to undo there.")
    return undo(store, edit_id, actor="review", if_latest=True)


def review_progress(store: Store, dataset: str | int, cap: int = 10**9, **filters) -> dict:
    """{"reviewed": n, "total": n} of the pairs matching the filters (each count stops at
    cap + 1)."""
    filters.pop("reviewed", None)
    total = count_matches(store, dataset, cap=cap, **filters)
    done = count_matches(store, dataset, cap=cap, reviewed=True, **filters)
    return {"reviewed": done, "total": total}
