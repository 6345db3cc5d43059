"""Agreement figures against hand computations: Cohen's kappa per annotator pair, Fleiss' kappa,
Krippendorff's alpha, raw agreement and agreement with the majority; the disagreement queue and
the owner's decisions."""

from __future__ import annotations

import pytest

from dpo_core.annotation.agreement import (
    adjudicate,
    agreement_of,
    cohen_kappa,
    disagreements,
    majority,
    task_agreement,
)
from dpo_core.annotation.tasks import create_task, get_task, task_pair_ids
from tests.annotation.helpers import answer, pairs_dataset, team

C, R = "chosen", "rejected"


@pytest.mark.parametrize("a, b, kappa", [
    # po = 7/10, pe = .6 * .5 + .4 * .5 = .5: kappa = (.7 - .5) / (1 - .5) = .4
    ([C, C, C, C, C, C, R, R, R, R], [C, C, C, C, R, R, R, R, R, C], 0.4),
    ([C, R, C, R], [C, R, C, R], 1.0),  # perfect agreement
    ([C, C, R, R], [C, R, C, R], 0.0),  # chance agreement: po = pe = .5
    ([C, C], [C, C], None),  # one category only: kappa is undefined, not NaN
])
def test_cohens_kappa_equals_the_hand_computation(a, b, kappa):
    assert cohen_kappa(a, b) == (None if kappa is None else pytest.approx(kappa))


def test_three_annotators_figures_equal_the_hand_computation():
    table = {1: {"x": C, "y": C, "z": C}, 2: {"x": C, "y": C, "z": R},
             3: {"x": R, "y": R, "z": R}, 4: {"x": C, "y": R, "z": R}}
    got = agreement_of(table, k=3)
    # P_i = 1, 1/3, 1, 1/3 -> P = 2/3; p_C = p_R = .5 -> Pe = .5: kappa = (2/3 - .5) / .5
    assert got["fleiss_kappa"] == pytest.approx(1 / 3)
    # coincidences o_CC = o_RR = 4, o_CR = o_RC = 2 of n = 12: Do = 4/12, De = 2*6*6/(12*11)
    assert got["krippendorff_alpha"] == pytest.approx(1 - (4 / 12) / (72 / 132))
    assert got["raw"] == 0.5  # pairs 1 and 3 unanimous
    assert {p["annotator"]: p["with_majority"] for p in got["annotators"]} == \
        {"x": 0.75, "y": 1.0, "z": 0.75}
    xy = next(p for p in got["pairwise"] if p["annotators"] == ["x", "y"])
    # x = CCRC, y = CCRR: po = .75, pe = .75 * .5 + .25 * .5 = .5 -> .5
    assert xy["raw"] == 0.75 and xy["cohen_kappa"] == pytest.approx(0.5)


def test_perfect_and_chance_agreement_over_a_whole_table():
    perfect = {i: {"x": lab, "y": lab} for i, lab in enumerate([C, R, "tie", C])}
    got = agreement_of(perfect, k=2)
    assert got["fleiss_kappa"] == pytest.approx(1.0)
    assert got["krippendorff_alpha"] == pytest.approx(1.0) and got["raw"] == 1.0
    chance = {i: {"x": a, "y": b} for i, (a, b) in enumerate([(C, C), (C, R), (R, C), (R, R)])}
    assert agreement_of(chance, k=2)["pairwise"][0]["cohen_kappa"] == pytest.approx(0.0)


def test_majority_needs_a_label_ahead_of_the_others():
    assert majority([C, C, R]) == C
    assert majority([C, R]) is None and majority([]) is None


def test_task_agreement_and_the_disagreement_queue_through_the_library(memory_store):
    people = team(memory_store, "ann", "bob")
    pairs_dataset(memory_store, 4)
    create_task(memory_store, people["boss"], "t", "prefs", k=2)
    ids = task_pair_ids(memory_store, get_task(memory_store, "t"))
    for pid, (a, b) in zip(ids, [(C, C), (C, R), (R, C), (R, R)], strict=True):
        answer(memory_store, people["ann"], "t", pid, a)
        answer(memory_store, people["bob"], "t", pid, b)
    got = task_agreement(memory_store, people["boss"], "t")
    assert got["pairwise"][0]["cohen_kappa"] == pytest.approx(0.0) and got["raw"] == 0.5
    queue = disagreements(memory_store, people["boss"], "t")
    assert [q["pair_id"] for q in queue] == ids[1:3]
    assert {j["annotator"] for j in queue[0]["judgments"]} == {"ann", "bob"}
    adjudicate(memory_store, people["boss"], "t", ids[1], "rejected")
    assert [q["pair_id"] for q in disagreements(memory_store, people["boss"], "t")] == [ids[2]]
