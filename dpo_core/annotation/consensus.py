"""A task's outcome as a derived dataset: each pair with its consensus label (the owner's
decision, else the majority of its k judgments), swaps and edits applied, and every judgment kept
in the pair's metadata and as export columns (`annotator_<name>`, `consensus`). The dataset
remembers its parent, the task and the recipe, so the Train page takes it like any other."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from ..data.datasets import Dataset, Pair, create_dataset, get_dataset, insert_pairs
from ..data.edits import get_pair
from ..errors import DataError, NotFoundError
from ..store import Store
from .accounts import Account, require
from .agreement import majority
from .tasks import Task, get_task, task_pair_ids

Keep = Literal["drop", "keep"]


def decisions(store: Store, t: Task) -> dict[int, tuple[str | None, str, list[dict]]]:
    """pair id -> (label or None, how it was decided, its judgments) for every pair of the task."""
    judged: dict[int, list[dict]] = {}
    for r in store.query("SELECT pair_id, annotator, label, strength, reason, edit FROM "
                         "judgments WHERE task_id=? ORDER BY id", (t.id,)):
        judged.setdefault(r["pair_id"], []).append(dict(r))
    owner = {r["pair_id"]: (r["label"], f"owner:{r['decided_by']}") for r in store.query(
        "SELECT pair_id, label, decided_by FROM adjudications WHERE task_id=?", (t.id,))}
    out = {}
    for pair_id in task_pair_ids(store, t):
        rows = judged.get(pair_id, [])
        if pair_id in owner:
            out[pair_id] = (*owner[pair_id], rows)
        elif len(rows) < t.k:
            out[pair_id] = (None, "pending", rows)
        else:
            label = majority([r["label"] for r in rows])
            out[pair_id] = (label, "majority" if label else "undecided", rows)
    return out


def _edited(reply, text: str):
    """The better reply with the annotator's edit: the text, or a conversation's last turn."""
    if isinstance(reply, list) and reply:
        return [*reply[:-1], {**reply[-1], "content": text}]
    return text


def _consensus_pair(pair: Pair, label: str, how: str, rows: list[dict],
                    annotators: list[str], task: str) -> Pair:
    chosen, rejected = (pair.rejected, pair.chosen) if label == "rejected" else (pair.chosen,
                                                                                 pair.rejected)
    flags = [*pair.flags, "annotated"] + (["swapped"] if label == "rejected" else [])
    edit = next((r["edit"] for r in rows if r["label"] == label and r["edit"]), None)
    if edit:
        chosen, flags = _edited(chosen, edit), [*flags, "edited"]
    if label in ("tie", "both_bad"):
        flags.append(label)
    by = {r["annotator"]: r["label"] for r in rows}
    columns = {**(pair.meta.get("columns") or {}),
               **{f"annotator_{a}": by.get(a, "") for a in annotators}, "consensus": label}
    meta = {**pair.meta, "columns": columns,
            "annotation": {"task": task, "label": label, "decided_by": how, "source_pair": pair.id,
                           "judgments": [{k: r[k] for k in ("annotator", "label", "strength",
                                                             "reason", "edit")} for r in rows]}}
    return Pair(pair.prompt, chosen, rejected, split=pair.split, source=pair.source,
                tags=pair.tags, flags=flags, note=pair.note, meta=meta)


def consensus_dataset(store: Store, actor: Account, task: str | int, *, into: str | None = None,
                      ties: Keep = "drop", both_bad: Keep = "drop") -> Dataset:
    """Write the consensus of a task as a new dataset derived from the task's dataset. Pairs
    without a decision (fewer than k judgments, or no majority and no owner decision) are left
    out, and so are ties and 'both bad' unless kept (then as they were labelled)."""
    require(actor, "owner", action="write the consensus dataset")
    for name, value in (("ties", ties), ("both_bad", both_bad)):
        if value not in ("drop", "keep"):
            raise DataError(f"{name} is '{value}'.", f"Use {name}=drop or {name}=keep.")
    t = get_task(store, task)
    parent = get_dataset(store, t.dataset_id if t.dataset_id is not None else t.dataset_name)
    found = decisions(store, t)
    annotators = sorted({r["annotator"] for _, _, rows in found.values() for r in rows})
    keep = {"tie": ties == "keep", "both_bad": both_bad == "keep"}
    pairs, dropped = [], Counter()
    for pair_id, (label, how, rows) in found.items():
        if label is None or not keep.get(label, True):
            dropped[label or how] += 1
            continue
        try:
            pair = get_pair(store, pair_id)
        except NotFoundError:
            pair = None
        if pair is None or pair.deleted:
            dropped["deleted"] += 1
            continue
        pairs.append(_consensus_pair(pair, label, how, rows, annotators, t.name))
    if not pairs:
        raise DataError(f"No pair of the task {t.name} has a consensus to keep "
                        f"(left out: {dict(dropped) or 'none'}).",
                        "Judge more pairs, adjudicate the disagreements, or keep ties.")
    recipe = {"op": "annotate", "parent": parent.name, "task": t.name, "task_id": t.id,
              "k": t.k, "ties": ties, "both_bad": both_bad, "annotators": annotators,
              "kept": len(pairs), "swapped": sum("swapped" in p.flags for p in pairs),
              "edited": sum("edited" in p.flags for p in pairs), "dropped": dict(dropped)}
    with store.write():
        ds = create_dataset(store, into or f"{parent.name}-{t.name}", parent_id=parent.id,
                            recipe=recipe, prompt_format=parent.prompt_format)
        insert_pairs(store, ds.id, pairs)
    return get_dataset(store, ds.id)
