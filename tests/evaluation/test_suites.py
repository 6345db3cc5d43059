"""BLiMP-layout suites scored the standard way: whole sentences after a BOS/EOS prefix token (as
lm-evaluation-harness does), the protocol stored and shown next to every number, the old
after-first-token scoring kept as an explicit option; HellaSwag-style acc_norm."""

from __future__ import annotations

import json

import pytest
import torch

from dpo_core.cli.main import main
from dpo_core.errors import ConfigError
from dpo_core.evaluation.evaluate import run_suite_evaluation
from dpo_core.evaluation.results import compare_evals, eval_details, list_evals, save_eval
from dpo_core.evaluation.suites import (
    ChoiceItem,
    multiple_choice_accuracy,
    read_suite,
    suite_accuracy,
)
from dpo_core.formats import PromptFormat
from dpo_core.models import DEFAULT_SPEC, resolve_model
from tests.support import shared_data

# paradigms where good and bad sentences differ in their first word, and a few others
BLIMP_FILES = ("only_npi_licensor_present", "sentential_negation_npi_licensor_present",
               "determiner_noun_agreement_1", "wh_questions_object_gap", "passive_1")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return resolve_model(str(tiny_model_dir))


def real_blimp(tmp_path, per_file: int = 4):
    """A few real BLiMP lines per file, in the BLiMP layout (no copy of the whole data set)."""
    source = shared_data("blimp")
    folder = tmp_path / "blimp"
    folder.mkdir()
    for name in BLIMP_FILES:
        lines = (source / f"{name}.txt").read_text(encoding="utf-8").splitlines()[:2 * per_file]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


# -- the independent computation: one sentence per forward, plain transformers ---------------
def whole_sentence_logps(model, tokenizer, sentence: str) -> torch.Tensor:
    """lm-evaluation-harness's loglikelihood("", " " + sentence): the context is one BOS token
    (EOS without one), the continuation is tokenized without special tokens, all of it scored."""
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None \
        else tokenizer.eos_token_id
    continuation = tokenizer(" " + sentence, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[prefix, *continuation]])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    return logp[torch.arange(len(continuation)), ids[0, 1:]]


def after_first_token_logps(model, tokenizer, sentence: str) -> torch.Tensor:
    ids = tokenizer(sentence)["input_ids"]
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
    return logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]


def _check_against_reference(loaded, folder, reference, method, **options):
    result = suite_accuracy(loaded.model, loaded.tokenizer, folder, method, batch_size=5,
                            **options)
    suite = read_suite(folder)
    expected = [(reference(loaded.model, loaded.tokenizer, good),
                 reference(loaded.model, loaded.tokenizer, bad))
                for name in suite for good, bad in suite[name]]
    reduce = (lambda t: float(t.sum())) if method == "sum-logp" else (lambda t: float(t.mean()))
    for row, (good, bad) in zip(result["per_pair"], expected, strict=True):
        assert row["chosen_score"] == pytest.approx(reduce(good), abs=1e-4)
        assert row["rejected_score"] == pytest.approx(reduce(bad), abs=1e-4)
        assert row["correct"] == (reduce(good) > reduce(bad))
    return result


# -- whole-sentence scoring -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sum-logp", "mean-logp"])
def test_whole_sentence_scores_equal_an_independent_computation_on_real_blimp(tiny, tmp_path,
                                                                              method):
    """Fails on the old scoring: it never scored each sentence's first token."""
    folder = real_blimp(tmp_path)
    result = _check_against_reference(tiny, folder, whole_sentence_logps, method)
    assert result["protocol"] == "whole-sentence" and result["n"] == 4 * len(BLIMP_FILES)
    assert set(result["files"]) == set(BLIMP_FILES)
    assert {r["item"] for r in result["per_pair"]} >= {"passive_1#0", "passive_1#3"}


def test_the_default_suite_scoring_is_whole_sentences_summed(tiny, tmp_path):
    """The default is lm-evaluation-harness's BLiMP accuracy: whole sentences, summed log-probs."""
    folder = real_blimp(tmp_path, per_file=2)
    default = suite_accuracy(tiny.model, tiny.tokenizer, folder)
    explicit = suite_accuracy(tiny.model, tiny.tokenizer, folder, "sum-logp",
                              protocol="whole-sentence")
    assert default["per_pair"] == explicit["per_pair"]
    assert (default["method"], default["protocol"]) == ("sum-logp", "whole-sentence")


def test_the_old_protocol_is_an_explicit_option(tiny, tmp_path):
    folder = real_blimp(tmp_path, per_file=2)
    result = _check_against_reference(tiny, folder, after_first_token_logps, "mean-logp",
                                      protocol="after-first-token")
    assert result["protocol"] == "after-first-token"
    with pytest.raises(ConfigError, match="Unknown suite protocol 'first'"):
        suite_accuracy(tiny.model, tiny.tokenizer, folder, protocol="first")
    with pytest.raises(ConfigError, match="implicit-reward needs pairs"):
        suite_accuracy(tiny.model, tiny.tokenizer, folder, "implicit-reward")


def test_a_pair_differing_only_in_its_first_word_is_judged_with_that_word(tiny, tmp_path):
    """'Only X ever ...' vs 'Even X ever ...': the old scoring left out the word that differs."""
    folder = tmp_path / "npi"
    folder.mkdir()
    good, bad = "Only Bill would ever complain.", "Even Bill would ever complain."
    (folder / "npi.txt").write_text(f"{good}\n{bad}\n")
    [row] = suite_accuracy(tiny.model, tiny.tokenizer, folder)["per_pair"]
    for score, sentence in ((row["chosen_score"], good), (row["rejected_score"], bad)):
        logps = whole_sentence_logps(tiny.model, tiny.tokenizer, sentence)
        assert score == pytest.approx(float(logps.sum()), abs=1e-4)  # the first word counts
        assert score != pytest.approx(float(logps[1:].sum()), abs=1e-3)


@pytest.mark.slow
def test_default_model_whole_sentence_scores_equal_the_independent_computation(
        workspace_with_default, tmp_path):
    """SmolLM2 adds no BOS of its own: the prefix token decides whether the first word counts."""
    loaded = resolve_model(DEFAULT_SPEC)
    folder = real_blimp(tmp_path, per_file=3)
    result = _check_against_reference(loaded, folder, whole_sentence_logps, "sum-logp")
    assert result["n"] == 3 * len(BLIMP_FILES)


# -- the protocol next to every number ---------------------------------------------------------
def test_cli_suite_stores_and_prints_the_protocol(tiny_model_dir, store, tmp_path, capsys):
    folder = real_blimp(tmp_path, per_file=2)
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "suite:sum-logp accuracy" in out and "protocol whole-sentence" in out
    assert "only_npi_licensor_present" in out and "n=2" in out
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", str(folder), "--protocol",
                 "after-first-token", "--method", "mean-logp", "--json"]) == 0
    old = json.loads(capsys.readouterr().out)
    assert (old["method"], old["protocol"]) == ("suite:mean-logp", "after-first-token")
    new, previous = list_evals(store)[1], list_evals(store)[0]
    assert (new["protocol"], previous["protocol"]) == ("whole-sentence", "after-first-token")
    assert main(["evals", "show", str(new["id"])]) == 0
    assert "protocol: whole-sentence" in capsys.readouterr().out
    assert main(["evals", "compare", str(new["id"]), str(previous["id"])]) == 0
    out = capsys.readouterr().out
    assert "whole-sentence" in out and "after-first-token" in out
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", str(folder), "--method",
                 "implicit-reward"]) == 2
    assert "implicit-reward needs pairs" in capsys.readouterr().err


def test_an_eval_stored_before_protocols_reads_as_the_old_scoring(store):
    old = save_eval(store, "builtin:tiny", None, "blimp", "suite:mean-logp",
                    {"accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 2, "scope": "full",
                     "files": {}, "suite": "blimp"}, [])
    pairs = save_eval(store, "builtin:tiny", None, "", "mean-logp",
                      {"accuracy": 0.5, "n": 2, "scope": "reply"}, [])
    assert eval_details(store, old)["protocol"] == "after-first-token"
    assert [r["protocol"] for r in compare_evals(store, [old, pairs])] == [
        "after-first-token", "reply-tokens"]


def test_suite_evaluation_stores_one_row_per_sentence_pair(tiny, store, tmp_path):
    folder = real_blimp(tmp_path, per_file=2)
    summary = run_suite_evaluation(store, "builtin:tiny", folder, loaded=tiny)
    details = eval_details(store, summary["eval_id"])
    assert details["metrics"]["protocol"] == "whole-sentence"
    assert [r["item"] for r in details["results"]][:2] == ["determiner_noun_agreement_1#0",
                                                          "determiner_noun_agreement_1#1"]
    assert len({r["item"] for r in details["results"]}) == len(details["results"])
    assert all(r["file"] in BLIMP_FILES for r in details["results"])


# -- multiple choice: acc_norm beside accuracy --------------------------------------------------
def test_multiple_choice_reports_acc_norm_per_character(tiny):
    items = [ChoiceItem("the dog", ["runs.", "is a very long and unlikely truck of juice."], 1),
             ChoiceItem("what is that ? it", ["is a ball .", "is.", "okay ."], 0)]
    result = multiple_choice_accuracy(tiny.model, tiny.tokenizer, PromptFormat(), items,
                                      "sum-logp")
    for item, row in zip(items, result["per_item"], strict=True):
        sums = []
        for choice in item.choices:
            ctx = tiny.tokenizer(item.context)["input_ids"]
            full = tiny.tokenizer(item.context + " " + choice)["input_ids"]
            start = next((i for i, (a, b) in enumerate(zip(ctx, full, strict=False)) if a != b),
                         len(ctx))
            with torch.no_grad():
                logp = tiny.model(input_ids=torch.tensor([full])).logits[0, :-1].log_softmax(-1)
            sums.append(float(logp[torch.arange(start - 1, len(full) - 1),
                                   torch.tensor(full[start:])].sum()))
        norm = [s / len(c) for s, c in zip(sums, item.choices, strict=True)]
        assert row["norm_predicted"] == max(range(len(norm)), key=norm.__getitem__)
        assert row["predicted"] == max(range(len(sums)), key=sums.__getitem__)
    assert result["acc_norm"] == sum(r["norm_correct"] for r in result["per_item"]) / 2
    assert result["acc_norm_ci_low"] <= result["acc_norm"] <= result["acc_norm_ci_high"]


def test_cli_prints_acc_norm_beside_accuracy_for_choices(tiny_model_dir, store, tmp_path,
                                                          capsys):
    record = {"prompt": 'Context: "A cat jumps. it"\n0: "lands."\n1: "flies far away."\n'
                        'Best Continuation:', "chosen": " 0", "rejected": " 1"}
    path = tmp_path / "hs.json"
    path.write_text(json.dumps([record, {**record, "chosen": " 1", "rejected": " 0"}]))
    assert main(["eval", "--model", str(tiny_model_dir), "--pairs-file", str(path),
                 "--as-choices"]) == 0
    out = capsys.readouterr().out
    assert "choices:mean-logp accuracy" in out and "acc_norm" in out
    assert "protocol choice-tokens" in out
    [stored] = compare_evals(store, [list_evals(store)[0]["id"]])
    assert stored["acc_norm"] is not None and stored["protocol"] == "choice-tokens"
