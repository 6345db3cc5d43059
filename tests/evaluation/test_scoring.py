"""Evaluation: batched scores equal one-text-per-forward scores, suites, choices, judges, store."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from dpo_core.chat.sampling import SamplingSettings
from dpo_core.cli.main import main
from dpo_core.data.datasets import Pair, create_dataset, insert_pairs
from dpo_core.errors import DataError
from dpo_core.evaluation import scoring
from dpo_core.evaluation.evaluate import run_evaluation, save_win_rate
from dpo_core.evaluation.judges import LexiconJudge
from dpo_core.evaluation.results import compare_evals, flip_analysis, list_evals
from dpo_core.evaluation.scoring import (
    encode_pairs,
    encode_text,
    implicit_rewards,
    pair_accuracy,
    score_encoded,
    score_encoded_pairs,
    score_pairs,
)
from dpo_core.evaluation.statistics import bootstrap_ci
from dpo_core.evaluation.suites import (
    CONCAT_FORMAT,
    ChoiceItem,
    hellaswag_choices,
    multiple_choice_accuracy,
    read_pairs_json,
    read_suite,
    suite_accuracy,
)
from dpo_core.evaluation.win_rate import generate_replies, win_rate
from dpo_core.formats import CHAT_FORMAT, CHILDES_FORMAT
from dpo_core.models import DEFAULT_SPEC, model_state, resolve_model
from tests.support import shared_data

PROMPTS = ["*MOT: what is that ?", "*MOT: where is the dog ?", "*FAT: look at the big truck .",
           "*MOT: do you want some juice ?", "*MOT: what color is it ?", "*MOT: can you say that ?"]
REPLIES = ["*CHI: it is a ball .", "*CHI: there's a dog !", "*CHI: yes please .",
           "*CHI: it's red .", "*CHI: I want the truck .", "*CHI: okay .", "*CHI: no ."]


def make_pairs(n: int = 40) -> list[dict]:
    combos = itertools.product(PROMPTS, itertools.permutations(REPLIES, 2))
    return [{"prompt": p, "chosen": c, "rejected": r} for p, (c, r) in itertools.islice(combos, n)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return resolve_model(str(tiny_model_dir))


# -- the independent computation: plain transformers, one text per forward ------------------
def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]


def reference_score(model, tokenizer, prompt_text: str, reply_text: str, scope: str,
                    method: str = "mean-logp") -> float:
    """Score one text alone; the reply starts where tokenized prompt and full text diverge."""
    ids = _ids(tokenizer, prompt_text + reply_text)
    with torch.no_grad():
        if scope == "full" and method == "mean-logp":  # what the CHILDES script computed
            x = torch.tensor([ids])
            return -float(model(input_ids=x, labels=x).loss)
        logp = model(input_ids=torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
    token_lp = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    start = 1
    if scope == "reply":
        prompt_ids = _ids(tokenizer, prompt_text)
        same = [a == b for a, b in zip(prompt_ids, ids, strict=False)]
        start = max(1, same.index(False) if False in same else len(same))
    scored = token_lp[start - 1:]
    return float(scored.mean() if method == "mean-logp" else scored.sum())


def reference_pairs(loaded, fmt, pairs, scope, method="mean-logp"):
    tok = loaded.tokenizer
    out = []
    for p in pairs:
        prompt_text = fmt.render_prompt(p["prompt"], tok)
        out.append(tuple(reference_score(loaded.model, tok, prompt_text,
                                         fmt.render_reply(p[k], tok), scope, method)
                         for k in ("chosen", "rejected")))
    return out


# -- pair scoring ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [CHILDES_FORMAT, CHAT_FORMAT], ids=["plain", "chat"])
@pytest.mark.parametrize("scope", ["reply", "full"])
def test_batched_mean_logp_equals_one_text_per_forward(tiny, fmt, scope):
    pairs = make_pairs(40)
    batched = score_pairs(tiny.model, tiny.tokenizer, fmt, pairs, "mean-logp", scope,
                             batch_size=7)
    single = reference_pairs(tiny, fmt, pairs, scope)
    assert [c > r for c, r in batched] == [c > r for c, r in single]
    assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=1e-5)


def test_sum_logp_equals_reference(tiny):
    pairs = make_pairs(12)
    batched = score_pairs(tiny.model, tiny.tokenizer, CHILDES_FORMAT, pairs, "sum-logp")
    single = reference_pairs(tiny, CHILDES_FORMAT, pairs, "reply", "sum-logp")
    assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=1e-4)


def test_reply_start_survives_a_bpe_merge_at_the_boundary(tiny):
    tok = tiny.tokenizer
    prompt_ids = _ids(tok, "*MOT: what is th")
    ids, start = encode_text(tok, "*MOT: what is th", "at ?", "reply")
    assert list(ids) == _ids(tok, "*MOT: what is that ?")  # one tokenization of the full text
    assert start <= len(prompt_ids) and list(ids[:start]) == prompt_ids[:start]
    assert "at ?" in tok.decode(list(ids[start:]))


def test_batch_size_does_not_change_scores(tiny):
    pairs = make_pairs(20)
    one = score_pairs(tiny.model, tiny.tokenizer, CHILDES_FORMAT, pairs, batch_size=1)
    many = score_pairs(tiny.model, tiny.tokenizer, CHILDES_FORMAT, pairs, batch_size=32)
    assert torch.allclose(torch.tensor(one), torch.tensor(many), atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_shared_prefix_scoring_equals_whole_texts(tiny, batch_size):
    """Running each pair's shared prefix once gives the scores of running each text whole,
    including a reply that is a prefix of the other, pairs sharing a prompt, and odd lengths."""
    pairs = make_pairs(30) + [
        {"prompt": "*MOT: say no .", "chosen": "*CHI: no .", "rejected": "*CHI: no no no ."},
        {"prompt": "*MOT: say no .", "chosen": "*CHI: no no no .", "rejected": "*CHI: no ."},
        {"prompt": "*MOT: and ?", "chosen": "*CHI: a", "rejected": "*CHI: b"}]
    for scope in ("reply", "full"):
        args = (tiny.model, tiny.tokenizer, CHILDES_FORMAT, pairs, "sum-logp", scope, batch_size)
        shared = score_pairs(*args, shared_prefix=True)
        whole = score_pairs(*args, shared_prefix=False)
        assert torch.allclose(torch.tensor(shared), torch.tensor(whole), atol=1e-4)
        assert [c > r for c, r in shared] == [c > r for c, r in whole]
    items = encode_pairs(tiny.tokenizer, CHILDES_FORMAT, pairs, "reply")
    counts = [c for _, c in score_encoded_pairs(tiny.model, tiny.tokenizer, items, 8)]
    assert counts == [c for _, c in score_encoded(tiny.model, tiny.tokenizer, items, 8)]


def test_pair_accuracy_reports_interval_margin_and_per_pair(tiny):
    pairs = make_pairs(40)
    result = pair_accuracy(tiny.model, tiny.tokenizer, CHILDES_FORMAT, pairs, seed=3)
    assert result["n"] == 40 and len(result["per_pair"]) == 40
    assert result["ci_low"] <= result["accuracy"] <= result["ci_high"]
    correct = [r["correct"] for r in result["per_pair"]]
    assert result["accuracy"] == sum(correct) / 40
    margins = [r["chosen_score"] - r["rejected_score"] for r in result["per_pair"]]
    assert result["mean_margin"] == pytest.approx(sum(margins) / 40)
    again = pair_accuracy(tiny.model, tiny.tokenizer, CHILDES_FORMAT, pairs, seed=3)
    assert (again["ci_low"], again["ci_high"]) == (result["ci_low"], result["ci_high"])


def test_bootstrap_interval_contains_accuracy():
    correct = [True] * 64 + [False] * 36
    low, high = bootstrap_ci(correct, seed=1)
    assert low < 0.64 < high and high - low < 0.25
    assert bootstrap_ci(correct, seed=1) == (low, high)


def test_implicit_reward_is_beta_times_policy_minus_reference(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    loaded = resolve_model(str(tiny_model_dir))
    model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    pairs = make_pairs(10)
    untouched = implicit_rewards(model, loaded.tokenizer, CHILDES_FORMAT, pairs, beta=0.1)
    assert all(c == 0 and r == 0 for c, r in untouched)  # LoRA B starts at zero: policy == ref
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    rewards = implicit_rewards(model, loaded.tokenizer, CHILDES_FORMAT, pairs, beta=0.2)
    policy = score_pairs(model, loaded.tokenizer, CHILDES_FORMAT, pairs, "sum-logp",
                            add_eos=True)
    with model.disable_adapter():
        ref = score_pairs(model, loaded.tokenizer, CHILDES_FORMAT, pairs, "sum-logp",
                             add_eos=True)
    expected = [(0.2 * (pc - rc), 0.2 * (pr - rr))
                for (pc, pr), (rc, rr) in zip(policy, ref, strict=True)]
    assert torch.allclose(torch.tensor(rewards), torch.tensor(expected), atol=1e-6)
    assert any(abs(c) > 1e-3 for c, _ in rewards)


# -- suites and multiple choice --------------------------------------------------------------
@pytest.fixture
def suite_dir(tmp_path):
    folder = tmp_path / "blimp"
    folder.mkdir()
    (folder / "agreement.txt").write_text(
        "The dog is red.\nThe dog are red.\nIt is a ball.\nIt are a ball.\n\n")
    (folder / "questions.txt").write_text(
        "What is that?\nWhat that is?\nWhere is the dog?\nWhere the dog is?\nI want juice.\n"
        "Juice want I.\n")
    return folder


def test_suite_accuracy_per_file_and_overall(tiny, suite_dir):
    result = suite_accuracy(tiny.model, tiny.tokenizer, suite_dir, "mean-logp",
                            protocol="after-first-token")
    assert set(result["files"]) == {"agreement", "questions"}
    assert result["files"]["agreement"]["n"] == 2 and result["files"]["questions"]["n"] == 3
    for name, pairs in read_suite(suite_dir).items():
        expected = [reference_score(tiny.model, tiny.tokenizer, "", good, "full")
                    > reference_score(tiny.model, tiny.tokenizer, "", bad, "full")
                    for good, bad in pairs]
        assert result["files"][name]["accuracy"] == sum(expected) / len(expected)
    assert result["n"] == 5
    assert result["accuracy"] == pytest.approx(sum(r["correct"] for r in result["per_pair"]) / 5)


def test_suite_with_an_odd_file_names_it(tiny, tmp_path):
    (tmp_path / "broken.txt").write_text("Good one.\nBad one.\nOrphan.\n")
    with pytest.raises(DataError, match="broken.txt has an odd number"):
        read_suite(tmp_path)


def test_multiple_choice_best_score_wins(tiny):
    items = [ChoiceItem("*MOT: what is that ?", REPLIES[:4], 0),
             ChoiceItem("*MOT: where is the dog ?", REPLIES[2:6], 2),
             ChoiceItem("*MOT: what color is it ?", REPLIES[:3], 1)]
    result = multiple_choice_accuracy(tiny.model, tiny.tokenizer, CHILDES_FORMAT, items)
    for item, row in zip(items, result["per_item"], strict=False):
        ref = [reference_score(tiny.model, tiny.tokenizer, item.context + "",
                               " " + choice, "reply") for choice in item.choices]
        assert row["predicted"] == max(range(len(ref)), key=ref.__getitem__)
        assert row["correct"] == (row["predicted"] == item.answer)
    assert result["accuracy"] == sum(r["correct"] for r in result["per_item"]) / 3


def test_hellaswag_records_parse_as_choices():
    record = {"prompt": 'Context: "A man sits. he"\n0: "runs."\n1: "waits."\nBest Continuation: 1'
                        '\n\nContext: "A cat jumps. it"\n0: "lands."\n1: "flies away."\n'
                        '2: "sleeps."\nBest Continuation:', "chosen": " 2", "rejected": " 0"}
    [item] = hellaswag_choices([record])
    assert item == ChoiceItem("A cat jumps. it", ["lands.", "flies away.", "sleeps."], 2)


def test_real_hellaswag_noise_file_as_choices_and_pairs(tiny):
    records = read_pairs_json(shared_data("hellaswag-noise", "val-1.json"))[:3]
    items = hellaswag_choices(records)
    assert all(len(i.choices) == 4 and 0 <= i.answer < 4 for i in items)
    as_pairs = pair_accuracy(tiny.model, tiny.tokenizer, CONCAT_FORMAT, records)
    assert as_pairs["n"] == 3


def test_real_blimp_folder_scores_per_file(tiny):
    result = suite_accuracy(tiny.model, tiny.tokenizer, shared_data("blimp"), limit=2)
    assert len(result["files"]) >= 60 and all(r["n"] == 2 for r in result["files"].values())


# -- judges and generation -------------------------------------------------------------------
def test_lexicon_judge_prefers_the_kinder_reply():
    judge = LexiconJudge()
    kind, rude = "Thank you, that is wonderful and very kind!", "This is terrible. I hate it."
    assert judge.judge("How was it?", kind, rude)[0] == "a"
    assert judge.judge("How was it?", rude, kind)[0] == "b"
    assert judge.judge("How was it?", "It is a ball.", "It is a ball.")[0] == "tie"


def test_generation_is_seeded_and_win_rate_counts_every_prompt(tiny, store):
    settings = SamplingSettings(max_new_tokens=6)
    prompts = ["What is that?", "Write a short poem about the sea."]
    first = generate_replies(tiny, prompts, settings, seed=5)
    assert first == generate_replies(tiny, prompts, settings, seed=5)
    result = win_rate(tiny, tiny, prompts, LexiconJudge(), settings, seed=5)
    assert result["wins"] + result["ties"] + result["losses"] == 2
    assert [r["tuned"] for r in result["rows"]] == [r["baseline"] for r in result["rows"]]
    eval_id = save_win_rate(store, "tuned", "base", result)
    rows = store.query("SELECT detail_json FROM eval_results WHERE eval_id=?", (eval_id,))
    assert [json.loads(r["detail_json"])["prompt"] for r in rows] == prompts


# -- persistence, comparison, flips, CLI -----------------------------------------------------
def _dataset(store, name="kids", n=30):
    ds = create_dataset(store, name, prompt_format=CHILDES_FORMAT.to_dict())
    insert_pairs(store, ds.id, [Pair(**p, split="eval" if i % 5 else "train")
                                for i, p in enumerate(make_pairs(n))])
    return ds


def test_run_evaluation_stores_results_and_flips(tiny_model_dir, store):
    _dataset(store)
    base = resolve_model(str(tiny_model_dir))
    tuned = resolve_model(str(tiny_model_dir))
    torch.manual_seed(1)
    with torch.no_grad():
        for param in tuned.model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    [a] = run_evaluation(store, "base", "kids", "eval", loaded=base)
    [b] = run_evaluation(store, "tuned", "kids", "eval", loaded=tuned)
    assert a["n"] == 24 and a["ci_low"] <= a["accuracy"] <= a["ci_high"]
    stored = store.query("SELECT * FROM eval_results WHERE eval_id=?", (a["eval_id"],))
    assert len(stored) == 24 and all(r["pair_id"] for r in stored)
    assert [e["id"] for e in list_evals(store, "kids")] == [b["eval_id"], a["eval_id"]]
    table = compare_evals(store, [a["eval_id"], b["eval_id"]])
    assert [r["model"] for r in table] == ["base", "tuned"] and table[0]["benchmark"] == "kids/eval"

    flips = flip_analysis(store, a["eval_id"], b["eval_id"])
    ca = {r["pair_id"]: r["correct"] for r in stored}
    cb = {r["pair_id"]: r["correct"] for r in store.query(
        "SELECT * FROM eval_results WHERE eval_id=?", (b["eval_id"],))}
    assert {r["pair_id"] for r in flips["fixed"]} == {k for k in ca if not ca[k] and cb[k]}
    assert {r["pair_id"] for r in flips["broken"]} == {k for k in ca if ca[k] and not cb[k]}
    assert flips["fixed"] or flips["broken"]
    row = (flips["fixed"] + flips["broken"])[0]
    assert row["prompt"].startswith("*") and "tuned_chosen" in row and "baseline_rejected" in row


def test_cli_evals_list_show_compare_and_flips(tiny_model_dir, store, tmp_path, capsys):
    """What the Evaluate page shows is there from the terminal too."""
    import csv

    _dataset(store)
    base = resolve_model(str(tiny_model_dir))
    tuned = resolve_model(str(tiny_model_dir))
    torch.manual_seed(1)
    with torch.no_grad():
        for param in tuned.model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    [a] = run_evaluation(store, "base", "kids", "eval", loaded=base)
    [b] = run_evaluation(store, "tuned", "kids", "eval", loaded=tuned)
    flips = flip_analysis(store, a["eval_id"], b["eval_id"])

    assert main(["evals", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"#{b['eval_id']}") and "kids/eval" in lines[0]
    assert main(["evals", "show", str(a["eval_id"]), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["metrics"]["accuracy"] == a["accuracy"] and len(shown["results"]) == 24
    assert sum(r["correct"] for r in shown["results"]) == round(a["accuracy"] * 24)
    assert main(["evals", "show", str(a["eval_id"]), "--pairs", "2"]) == 0
    assert "22 more" in capsys.readouterr().out
    assert main(["evals", "compare", str(a["eval_id"]), str(b["eval_id"])]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["base", "tuned"]
    out_csv = tmp_path / "flips.csv"
    assert main(["evals", "flips", str(a["eval_id"]), str(b["eval_id"]), "--out",
                 str(out_csv)]) == 0
    assert f"{len(flips['fixed'])} fixed" in capsys.readouterr().out
    written = list(csv.DictReader(out_csv.open()))
    assert len(written) == len(flips["fixed"]) + len(flips["broken"])
    assert {r["flip"] for r in written} <= {"fixed", "broken"} and written[0]["prompt"]
    assert main(["evals", "show", "999"]) == 2
    assert "evals list" in capsys.readouterr().err


def test_cli_eval_prints_accuracy_with_interval(tiny_model_dir, store, capsys):
    _dataset(store, "cli-kids", 10)
    assert main(["eval", "--model", str(tiny_model_dir), "--dataset", "cli-kids",
                 "--method", "mean-logp", "--method", "sum-logp", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in out] == ["mean-logp", "sum-logp"] and out[0]["n"] == 8
    assert main(["eval", "--model", str(tiny_model_dir), "--dataset", "cli-kids",
                 "--scope", "full", "--limit", "4"]) == 0
    line = capsys.readouterr().out
    assert "mean-logp accuracy" in line and "n=4" in line and "[" in line


def test_cli_eval_suite_and_errors(tiny_model_dir, store, suite_dir, capsys):
    assert main(["eval", "--model", str(tiny_model_dir), "--suite", str(suite_dir)]) == 0
    assert "agreement" in capsys.readouterr().out
    assert main(["eval", "--model", str(tiny_model_dir)]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert main(["eval", "--model", str(tiny_model_dir), "--dataset", "missing"]) == 2


def test_cli_eval_pairs_file_as_pairs_and_as_choices(tiny_model_dir, store, tmp_path, capsys):
    record = {"prompt": 'Context: "A cat jumps. it"\n0: "lands."\n1: "flies away."\n'
                        'Best Continuation:', "chosen": " 0", "rejected": " 1"}
    path = tmp_path / "hs.json"
    path.write_text(json.dumps([record, {**record, "chosen": " 1", "rejected": " 0"}]))
    for extra, method in (([], "pairs:mean-logp"), (["--as-choices"], "choices:mean-logp")):
        assert main(["eval", "--model", str(tiny_model_dir), "--pairs-file", str(path),
                     "--json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["method"] == method and out["n"] == 2
    assert {e["method"] for e in list_evals(store)} == {"pairs:mean-logp", "choices:mean-logp"}
    for extra, has_margin in (([], True), (["--as-choices"], False)):
        assert main(["eval", "--model", str(tiny_model_dir), "--pairs-file", str(path),
                     *extra]) == 0
        assert ("mean margin" in capsys.readouterr().out) is has_margin  # no margin in choices


@pytest.mark.slow
def test_default_model_mean_logp_equals_reference_on_childes(workspace_with_default):
    assert model_state()["ready"]
    records = json.loads(shared_data("childes-dpo", "huggingface_dpo_format_eval.json")
                         .read_text())[:16]
    loaded = resolve_model(DEFAULT_SPEC)
    for scope in ("full", "reply"):
        batched = score_pairs(loaded.model, loaded.tokenizer, CHILDES_FORMAT, records,
                                 "mean-logp", scope, batch_size=16)
        single = reference_pairs(loaded, CHILDES_FORMAT, records, scope)
        assert [c > r for c, r in batched] == [c > r for c, r in single]
        assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=1e-4)


def test_shared_prefix_falls_back_to_whole_texts_without_a_cache_api(tiny, monkeypatch):
    """A model whose cache cannot be reused still scores, with the whole-text path."""
    pairs = make_pairs(6)

    def no_cache(*args, **kwargs):
        raise NotImplementedError("no reusable cache")

    expected = score_pairs(tiny.model, tiny.tokenizer, CHILDES_FORMAT, pairs, "sum-logp",
                              shared_prefix=False)
    monkeypatch.setattr(scoring, "_score_pair_chunk", no_cache)
    got = score_pairs(tiny.model, tiny.tokenizer, CHILDES_FORMAT, pairs, "sum-logp")
    assert got == expected
