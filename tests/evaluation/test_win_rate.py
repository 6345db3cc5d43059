"""Win-rate replies end where the prompt format says an answer ends, as chat and the pair builders
cut them: on plain/CHILDES formats a reply never runs on into invented turns."""

from __future__ import annotations

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
