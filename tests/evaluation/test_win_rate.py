"""Win-rate replies end where the prompt format says an answer ends, as chat and the pair builders
cut them: on plain/CHILDES formats a reply never runs on into invented turns."""

from __future__ import annotations

import re

import pytest

from dpo_core.formats import CHILDES_FORMAT
from dpo_core.models import LoadedModel, load_tokenizer
from tests.support import JUDGE_PROMPT

RUN_ON = " it is a ball .\n*MOT: and what is this ?\n*CHI: a dog"


class ScriptedLM:
    """A stand-in causal LM whose every answer is the same text, token by token, that runs on
    past the end of its turn (as small plain-text models do)."""

    def __init__(self, tokenizer):
        import torch

        self.tokenizer = tokenizer
        self.script = tokenizer(RUN_ON, add_special_tokens=False)["input_ids"]
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self.weight])

    def modules(self):
        return iter([])

    def generate(self, input_ids, attention_mask=None, max_new_tokens=64, streamer=None,
                 stopping_criteria=None, **_):
        import torch

        out = input_ids
        if streamer is not None:
            streamer.put(input_ids)
        for token in self.script[:max_new_tokens]:
            out = torch.cat([out, torch.full((out.shape[0], 1), token)], dim=1)
            if streamer is not None:
                streamer.put(out[:, -1:])
            if stopping_criteria and all(bool(c(out, None).all()) for c in stopping_criteria):
                break
        return out


@pytest.fixture
def childes_model(tiny_model_dir) -> LoadedModel:
    tok = load_tokenizer(str(tiny_model_dir))
    return LoadedModel("scripted", str(tiny_model_dir), ScriptedLM(tok), tok, CHILDES_FORMAT)


def test_win_rate_replies_stop_at_the_next_speaker_turn(childes_model):
    from dpo_core.evaluation.win_rate import generate_replies

    replies = generate_replies(childes_model, [f"*MOT: {JUDGE_PROMPT}", "*MOT: where is it ?"])
    assert replies == ["it is a ball .", "it is a ball ."]


def test_win_rate_judges_the_answers_as_cut(childes_model):
    from dpo_core.evaluation.judges import LexiconJudge
    from dpo_core.evaluation.win_rate import win_rate

    result = win_rate(childes_model, childes_model, [f"*MOT: {JUDGE_PROMPT}"], LexiconJudge())
    [row] = result["rows"]
    assert row["tuned"] == row["baseline"] == "it is a ball ."
    assert "*MOT:" not in row["tuned"] and "\n" not in row["tuned"]


# ---------------------------------------------------------------------------------------------
# Several samples per prompt, ties, the length-controlled win rate, and the CLI
# ---------------------------------------------------------------------------------------------
class LongerWins:
    """A judge with the best-known flaw of judges: the longer answer wins, equal length ties."""

    name = "longer"

    def judge(self, prompt, a, b):
        return ("a" if len(a) > len(b) else "b" if len(b) > len(a) else "tie"), {}


def _rows(verdicts_and_lengths):
    return [{"prompt": f"p{i // 2}", "tuned": "x" * la, "baseline": "x" * lb, "verdict": v}
            for i, (v, la, lb) in enumerate(verdicts_and_lengths)]


def test_ties_count_half_and_the_interval_resamples_prompts():
    from dpo_core.evaluation.win_rate import summarize_verdicts

    result = summarize_verdicts(_rows([("a", 5, 5), ("tie", 5, 5), ("b", 5, 5), ("a", 5, 5)]))
    assert (result["wins"], result["ties"], result["losses"], result["n"]) == (2, 1, 1, 4)
    assert result["win_rate"] == pytest.approx(2.5 / 4)
    assert result["ci_low"] <= result["win_rate"] <= result["ci_high"]


def test_a_judge_that_prefers_longer_answers_is_length_controlled_to_even():
    from dpo_core.evaluation.win_rate import summarize_verdicts

    rows = _rows([("a", 40 + i, 10) if i % 4 else ("b", 10, 40) for i in range(24)])
    result = summarize_verdicts(rows)
    assert result["win_rate"] > 0.7  # the tuned model wins by talking longer
    assert result["lc_win_rate"] == pytest.approx(0.5, abs=0.1)
    assert result["length_slope"] > 0
    same_length = summarize_verdicts(_rows([("a", 10, 10)] * 6 + [("b", 10, 10)] * 2))
    assert same_length["lc_win_rate"] == pytest.approx(same_length["win_rate"], abs=0.02)


def test_several_samples_per_prompt_use_one_seed_each(tiny_model_dir, workspace_with_tiny):
    from dpo_core.evaluation.win_rate import win_rate
    from dpo_core.models import resolve_model
    from tests.support import make_lora_run

    spec = make_lora_run(workspace_with_tiny)
    tuned, base = resolve_model(spec), resolve_model("builtin:tiny")
    from dpo_core.chat.sampling import SamplingSettings

    settings = SamplingSettings(max_new_tokens=4, top_k=0, repetition_penalty=1.0)
    result = win_rate(tuned, base, ["what is that ?", "where is it ?"], LongerWins(), settings,
                      seed=5, samples=3)
    assert (result["n"], result["samples"], result["prompts"]) == (6, 3, 2)
    assert [r["sample"] for r in result["rows"]] == [0, 0, 1, 1, 2, 2]
    again = win_rate(tuned, base, ["what is that ?"], LongerWins(), settings, seed=6)
    assert again["rows"][0]["tuned"] == result["rows"][2]["tuned"]  # sample 1 = seed 5 + 1


def test_cli_win_rate_with_samples_ties_and_length_control(workspace_with_tiny, store, capsys):
    import json

    from dpo_core.cli.main import main
    from dpo_core.evaluation.results import list_evals
    from tests.support import add_pairs, make_lora_run

    add_pairs(store)
    spec = make_lora_run(workspace_with_tiny)
    assert main(["eval", "--win-rate", "--model", spec, "--dataset", "tiny-pairs", "--prompts",
                 "2", "--samples", "2", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert f"{spec} vs builtin:tiny" in out and "win rate" in out and "ties" in out
    assert "length-controlled win rate" in out and "2 prompts x 2 samples" in out
    [stored] = list_evals(store)
    assert stored["method"] == "win-rate:lexicon" and stored["n"] == 4
    assert stored["samples"] == 2 and stored["lc_win_rate"] is not None
    assert main(["eval", "--win-rate", "--model", spec, "--dataset", "tiny-pairs", "--prompts",
                 "1", "--samples", "1", "--max-new-tokens", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline"] == "builtin:tiny"


@pytest.mark.parametrize("judge, message", [
    ("reward:", "--judge reward:SPEC"), ("llm", "--judge reward:SPEC"),
    ("oracle", "Unknown judge 'oracle'"), ("lexicon:x", "takes no model")])
def test_cli_judge_errors_name_real_flags(workspace_with_tiny, store, capsys, judge, message):
    from dpo_core.cli.main import main
    from tests.support import add_pairs, make_lora_run

    add_pairs(store)
    spec = make_lora_run(workspace_with_tiny)
    assert main(["eval", "--win-rate", "--model", spec, "--dataset", "tiny-pairs", "--judge",
                 judge]) == 2
    err = capsys.readouterr().err
    assert message in err and "--judge-model" not in err


@pytest.mark.parametrize("template, message", [
    ("{prompt} A: {a} B: {b} by {judge}", "uses {judge}"),
    ("A: {a} B: {b} {", "cannot be filled in"), ("{prompt} {a}", "needs {a} and {b}")])
def test_a_judge_prompt_with_unknown_fields_is_refused_before_the_job(workspace_with_tiny, store,
                                                                     template, message):
    from dpo_core.errors import ConfigError
    from dpo_core.evaluation.job import start_evaluation
    from dpo_core.evaluation.judges import check_judge_template
    from tests.support import add_pairs

    add_pairs(store)
    with pytest.raises(ConfigError, match=re.escape(message)):
        start_evaluation(store, ["builtin:tiny", "builtin:tiny-2"], "tiny-pairs", methods=[],
                         win_rate={"judge": "llm", "judge_model": "builtin:tiny",
                                   "judge_template": template})
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_judge_template(template)
    check_judge_template("{prompt}: {{literal}} A={a} B={b}")  # doubled braces are text


def test_the_missing_judge_model_error_names_a_real_flag():
    from dpo_core.errors import ConfigError
    from dpo_core.evaluation.judges import make_judge

    with pytest.raises(ConfigError) as err:
        make_judge("reward-model", None)
    assert "--judge reward:SPEC" in err.value.fix and "--judge-model" not in str(err.value)
