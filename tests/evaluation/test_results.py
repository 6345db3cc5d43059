"""Stored evaluations compared: the paired test of baseline vs tuned on the same pairs, which
evaluations flip analysis pairs by default and when it warns, and spreadsheet-safe CSVs."""

from __future__ import annotations

import csv
import io

import pytest

from dpo_core.cli.main import main
from dpo_core.data.datasets import Pair, create_dataset, insert_pairs
from dpo_core.data.exporter import unguard_cell
from dpo_core.errors import ConfigError
from dpo_core.evaluation.results import (
    csv_text,
    default_flip_evals,
    flip_analysis,
    flips_csv,
    list_evals,
    paired_comparison,
    pairing_warning,
    save_eval,
)
from dpo_core.evaluation.statistics import mcnemar_p, paired_test

FORMULAS = ["=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)", "'quoted", "plain"]


def test_mcnemar_exact_p_values():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(0, 10) == pytest.approx(2 / 1024)  # 2 * 0.5**10
    assert mcnemar_p(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(3000, 3300) < 0.001  # large counts stay finite


def test_paired_interval_is_narrower_than_separate_ones_on_shared_pairs():
    from dpo_core.evaluation.statistics import bootstrap_ci

    # 200 pairs, most hard for both: the tuned model fixes 12 and breaks 2
    base = [True] * 100 + [False] * 100
    tuned = base[:]
    for i in range(100, 112):
        tuned[i] = True
    tuned[0] = tuned[1] = False
    test = paired_test(base, tuned, seed=3)
    assert (test["only_b"], test["only_a"], test["n"]) == (12, 2, 200)
    assert test["difference"] == pytest.approx(0.05)
    assert test["ci_low"] > 0 and test["p_value"] < 0.05  # the difference is real...
    low_a, high_a = bootstrap_ci(base, 3)
    low_b, high_b = bootstrap_ci(tuned, 3)
    assert low_b < high_a  # ...though the separate intervals overlap
    assert test["ci_high"] - test["ci_low"] < (high_b - low_b)


def _pairs(store, n=6):
    ds = create_dataset(store, "kids")
    insert_pairs(store, ds.id, [Pair(f"p{i}", FORMULAS[i % len(FORMULAS)], "no", split="eval")
                                for i in range(n)])
    return [r["id"] for r in store.query("SELECT id FROM pairs ORDER BY id")], ds.id


def _stored(store, ds_id, model, method, correct, ids):
    rows = [(pid, "", 1.0 if ok else 0.0, 0.5, int(ok), "{}") for pid, ok in zip(ids, correct,
                                                                               strict=True)]
    return save_eval(store, model, ds_id, "eval", method,
                     {"accuracy": sum(correct) / len(correct), "n": len(correct),
                      "scope": "reply", "dataset": "kids"}, rows)


def test_paired_comparison_of_two_stored_evaluations(store):
    ids, ds_id = _pairs(store)
    a = _stored(store, ds_id, "builtin:tiny", "mean-logp", [1, 0, 0, 1, 0, 1], ids)
    b = _stored(store, ds_id, "run:r1", "mean-logp", [1, 1, 1, 1, 0, 0], ids)
    result = paired_comparison(store, a, b)
    assert (result["n"], result["only_b"], result["only_a"]) == (6, 2, 1)
    assert result["difference"] == pytest.approx(1 / 6)
    assert result["baseline"]["accuracy"] == pytest.approx(0.5)
    assert result["tuned"]["accuracy"] == pytest.approx(4 / 6)
    assert result["baseline"]["ci_low"] <= 0.5 <= result["baseline"]["ci_high"]
    assert result["warning"] is None
    other = save_eval(store, "x", None, "blimp", "suite:sum-logp", {"accuracy": 1, "n": 1},
                      [(None, "f#0", 1.0, 0.0, 1, "{}")])
    with pytest.raises(ConfigError, match="share no scored pairs"):
        paired_comparison(store, a, other)


def test_cli_evals_paired(store, capsys):
    ids, ds_id = _pairs(store)
    a = _stored(store, ds_id, "builtin:tiny", "mean-logp", [1, 0, 0, 1, 0, 1], ids)
    b = _stored(store, ds_id, "run:r1", "sum-logp", [1, 1, 1, 1, 0, 0], ids)
    assert main(["evals", "paired", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "+16.7%" in out and "McNemar exact p" in out and "2 fixed" in out
    assert "Different methods" in out


def test_flip_analysis_defaults_to_the_same_method_and_warns_otherwise(store):
    ids, ds_id = _pairs(store)
    a1 = _stored(store, ds_id, "builtin:tiny", "mean-logp", [1] * 6, ids)
    a2 = _stored(store, ds_id, "builtin:tiny", "sum-logp", [1] * 6, ids)
    b2 = _stored(store, ds_id, "run:r1", "sum-logp", [0] * 6, ids)
    evals = list_evals(store)
    # the selection holds a mean-logp baseline and a sum-logp run: the pair is the sum-logp one
    assert default_flip_evals(evals, [a1, b2]) == (a2, b2)
    by_id = {e["id"]: e for e in evals}
    assert pairing_warning(by_id[a2], by_id[b2]) is None
    assert "Different methods" in pairing_warning(by_id[a1], by_id[b2])
    assert "Both evaluations are of builtin:tiny" in pairing_warning(by_id[a1], by_id[a2])
    assert default_flip_evals([by_id[a1]], [a1]) is None


def test_csvs_guard_formula_cells(store, tmp_path):
    text = csv_text([{"cell": f, "number": -1.5} for f in FORMULAS], ["cell", "number"])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["cell"] for r in rows] == ["'" + f for f in FORMULAS[:5]] + ["plain"]
    assert [unguard_cell(r["cell"]) for r in rows] == FORMULAS
    assert {r["number"] for r in rows} == {"-1.5"}  # numbers are not texts: left alone
    ids, ds_id = _pairs(store)
    a = _stored(store, ds_id, "builtin:tiny", "mean-logp", [0] * 6, ids)
    b = _stored(store, ds_id, "run:r1", "mean-logp", [1] * 6, ids)
    written = list(csv.DictReader(io.StringIO(flips_csv(flip_analysis(store, a, b)))))
    assert [r["chosen"] for r in written] == ["'" + f for f in FORMULAS[:5]] + ["plain"]
    out = tmp_path / "flips.csv"
    assert main(["evals", "flips", str(a), str(b), "--out", str(out)]) == 0
    written = list(csv.DictReader(out.open(encoding="utf-8")))
    assert written[0]["chosen"] == "'=HYPERLINK(\"http://x\")"


def test_cli_eval_quiet_prints_only_the_ids_for_scripts(workspace_with_tiny, store, capsys):
    """The README's BASE=$(python -m dpo_core eval ... --quiet) then `evals compare $BASE ...`."""
    from tests.support import add_pairs

    add_pairs(store)
    assert main(["eval", "--model", "builtin:tiny", "--dataset", "tiny-pairs", "--limit", "4",
                 "--method", "mean-logp", "--method", "sum-logp", "--quiet"]) == 0
    captured = capsys.readouterr()
    ids = [int(x) for x in captured.out.split()]
    assert ids == sorted(e["id"] for e in list_evals(store))  # and nothing else on stdout
    assert main(["evals", "compare", *map(str, ids)]) == 0


def test_the_readmes_evaluation_lines_run_in_bash(workspace_with_tiny, store, tmp_path):
    """The README's BASE=$(... --quiet) / TUNED=$(... --quiet) / evals compare / evals flips
    lines, run by bash as written (the tiny model and a tiny dataset in place of the default)."""
    import os
    import re
    import subprocess
    import sys

    from tests.support import REPO, add_pairs, make_lora_run

    add_pairs(store, "demo-instruct")
    run = make_lora_run(workspace_with_tiny).removeprefix("run:")  # the id `train` prints
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [line.split("#")[0].strip() for line in readme.splitlines()
             if re.match(r"(BASE|TUNED)=\$\(python -m dpo_core eval |python -m dpo_core evals "
                         r"(compare|flips) \$BASE \$TUNED", line)]
    assert len(lines) == 4, lines
    script = "\n".join(lines).replace("builtin:smollm2-135m-instruct", "builtin:tiny") \
        .replace("--quiet", "--limit 6 --quiet")
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\nRUN={run}\n{script}\necho \"ids $BASE $TUNED\""],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "DPO_LAB_HOME": str(workspace_with_tiny.home),
             "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"})
    assert done.returncode == 0, done.stderr[-3000:]
    base, tuned = (int(x) for x in done.stdout.rsplit("ids ", 1)[1].split())
    models = {e["id"]: e["model"] for e in list_evals(store)}
    assert (models[base], models[tuned]) == ("builtin:tiny", f"run:{run}")
    assert "builtin:tiny" in done.stdout and (tmp_path / "flips.csv").is_file()
