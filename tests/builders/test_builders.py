"""Pair builders that generate: teacher, weak model, best-of-N; prompts; resume; the job path."""

from __future__ import annotations

import json
import time

import pytest

from dpo_core.builders import makers
from dpo_core.builders.config import CHILDES_SYSTEM_PROMPT, GenerateConfig, load_config
from dpo_core.builders.job import preview, run_build
from dpo_core.builders.makers import Build, make_best_of_n_pairs
from dpo_core.builders.prompts import (
    check_pair,
    load_prompts,
    read_prompts_file,
    split_conversation,
    to_dataset_format,
)
from dpo_core.data.datasets import Pair, count_pairs, get_dataset, iter_pairs
from dpo_core.data.demo_datasets import seed_workspace
from dpo_core.errors import ConfigError, DataError
from dpo_core.jobs.lifecycle import job_status, wait_job
from dpo_core.models import TINY_SPEC

FAST = {"max_new_tokens": 8, "temperature": 1.0}


class Ctx:
    """A job context in-process: progress recorded, cancelled after `stop_after` chunks."""

    def __init__(self, store, stop_after: int | None = None):
        self.store, self.stop_after, self.calls = store, stop_after, []

    def progress(self, done, total, **counters):
        self.calls.append((done, total, counters))

    def cancelled(self) -> bool:
        return self.stop_after is not None and len(self.calls) > self.stop_after


@pytest.fixture
def seeded(workspace_with_tiny, store):
    seed_workspace(store)
    return store


def pairs_of(store, name: str):
    return list(iter_pairs(store, get_dataset(store, name).id))


def originals(store) -> dict[str, str]:
    """The source pairs' chosen replies by the origin a generated pair records."""
    return {f"pair {p.id}": p.chosen
            for p in iter_pairs(store, get_dataset(store, "demo-childes").id)}


def config(**overrides) -> GenerateConfig:
    base = {"builder": "teacher", "output": "out", "model": TINY_SPEC,
            "source_dataset": "demo-childes", "limit": 6, "batch_size": 3, "sampling": FAST}
    return GenerateConfig.from_dict({**base, **overrides})


# -- teacher: tagged replies, untagged flagged ---------------------------------------------------
def test_teacher_writes_tagged_chosen_and_keeps_original_as_rejected(seeded):
    result = run_build(config(), Ctx(seeded))
    assert result["done"] == result["kept"] == 6 and result["complete"]
    source = originals(seeded)
    pairs = pairs_of(seeded, "out")
    assert all(p.chosen.startswith("*CHI: ") for p in pairs)
    assert all(p.rejected == source[p.meta["origin"]] for p in pairs)
    assert all("speaker-tag" not in p.flags for p in pairs)
    assert {p.source for p in pairs} == {"teacher"}
    ds = get_dataset(seeded, "out")
    assert ds.parent_id == get_dataset(seeded, "demo-childes").id
    assert ds.prompt_format["reply_tag"] == "*CHI:"  # the source's format, not the model's
    assert ds.recipe["speaker_tag"] == "*CHI:" and ds.recipe["builder"] == "teacher"


def test_teacher_reverse_puts_generated_reply_in_rejected(seeded):
    run_build(config(teacher_writes="rejected", limit=3), Ctx(seeded))
    pairs = pairs_of(seeded, "out")
    assert all(p.rejected.startswith("*CHI: ") and p.chosen.startswith("*CHI: ") for p in pairs)


def test_untagged_output_is_flagged_before_saving(seeded, monkeypatch):
    monkeypatch.setattr(makers, "generate_texts", lambda side, texts, settings: ["I like it ."]
                        * len(texts))
    monkeypatch.setattr(makers, "to_dataset_format", lambda reply, tag: reply)  # a formatting bug
    result = run_build(config(limit=3), Ctx(seeded))
    pairs = pairs_of(seeded, "out")
    assert [p.chosen for p in pairs] == ["I like it ."] * 3
    assert all("speaker-tag" in p.flags for p in pairs)
    assert result["flagged"] == 3


def test_model_output_is_put_in_the_dataset_format():
    assert to_dataset_format("  *CHI: it is   red .", "*CHI:") == "*CHI: it is red ."
    assert to_dataset_format("it is red .", "*CHI:") == "*CHI: it is red ."
    assert to_dataset_format("it is red .", None) == "it is red ."
    pair = check_pair(Pair("*MOT: hi", "*CHI:", "*CHI: hi ."), "*CHI:")
    assert pair.flags == ["empty"]


# -- weak model ----------------------------------------------------------------------------------
def test_weak_model_writes_rejected_and_known_reply_stays_chosen(seeded):
    run_build(config(builder="weak", limit=4), Ctx(seeded))
    source = originals(seeded)
    pairs = pairs_of(seeded, "out")
    assert len(pairs) == 4
    assert all(p.chosen == source[p.meta["origin"]] and p.rejected.startswith("*CHI: ") for p in pairs)
    assert {p.source for p in pairs} == {"weak-model"}


def test_builders_that_need_a_known_reply_refuse_bare_prompts(seeded, tmp_path):
    txt = tmp_path / "prompts.txt"
    txt.write_text("hello\nhow are you?\n")
    with pytest.raises(DataError, match="no known reply"):
        run_build(config(builder="weak", source_dataset="", prompts_file=str(txt)), Ctx(seeded))


# -- best-of-N with the offline lexicon judge ----------------------------------------------------
def test_best_of_n_lexicon_on_20_prompts_records_margins_and_drops_ties(seeded):
    cfg = config(builder="best-of-n", source_dataset="demo-instruct", limit=20, n=4,
                 batch_size=20, min_margin=0.05, seed=3, sampling={**FAST, "max_new_tokens": 12})
    result = run_build(cfg, Ctx(seeded))
    pairs = pairs_of(seeded, "out")
    assert result["kept"] == len(pairs) and result["kept"] + result["dropped"] == 20
    assert pairs and result["dropped"] > 0, result
    for p in pairs:
        assert p.meta["margin"] >= 0.05
        assert p.meta["margin"] == pytest.approx(p.meta["chosen_score"] - p.meta["rejected_score"],
                                                 abs=1e-5)
        assert max(p.meta["scores"]) == pytest.approx(p.meta["chosen_score"], abs=1e-5)
        assert len(p.meta["scores"]) == 4 and p.meta["judge"] == "lexicon"
    recipe = get_dataset(seeded, "out").recipe
    assert recipe["builder"] == "best-of-n" and recipe["model"] == TINY_SPEC
    assert recipe["source"] == "demo-instruct" and recipe["seed"] == 3
    assert recipe["sampling"]["max_new_tokens"] == 12 and recipe["min_margin"] == 0.05
    assert recipe["progress"]["complete"] and recipe["config"] == cfg.to_dict()


def test_a_zero_threshold_keeps_every_pair_with_a_difference(seeded, monkeypatch):
    scores = iter([0.5, 0.1, 0.1, 0.3, 0.3, 0.3])

    class Judge:
        def score(self, prompt, reply):
            return next(scores)

    monkeypatch.setattr(makers, "render_prompts", lambda side, rows, system, tag: [r.prompt
                                                                                for r in rows])
    monkeypatch.setattr(makers, "generate_texts",
                        lambda side, texts, s: [f"reply {s.seed} to {t[-5:]}" for t in texts])
    cfg = config(builder="best-of-n", source_dataset="demo-instruct", limit=2, n=3)
    build = Build(cfg, None, None, Judge())
    pairs, dropped = make_best_of_n_pairs(build, load_prompts(seeded, cfg), 0)
    assert dropped == 1 and len(pairs) == 1  # the second prompt's candidates all tie
    assert pairs[0].chosen.startswith("reply 0") and pairs[0].rejected.startswith("reply 1")
    assert pairs[0].meta["margin"] == pytest.approx(0.4)


# -- resume ----------------------------------------------------------------------------------------
def test_cancelled_build_keeps_finished_chunks_and_resumes(seeded):
    cfg = config(limit=9, batch_size=3)
    first = run_build(cfg, Ctx(seeded, stop_after=1))  # start report + one chunk, then stop
    assert first["done"] == 3 and not first["complete"]
    assert count_pairs(seeded, get_dataset(seeded, "out").id) == 3
    second = run_build(cfg, Ctx(seeded))
    assert second["done"] == 9 and second["complete"] and second["kept"] == 9
    indices = [p.meta["index"] for p in pairs_of(seeded, "out")]
    assert indices == list(range(9))  # no gap, no duplicate
    with pytest.raises(DataError, match="already complete"):
        run_build(cfg, Ctx(seeded))
    with pytest.raises(DataError, match="not made by this config"):
        run_build(config(limit=9, batch_size=3, seed=5), Ctx(seeded))


# -- prompts ------------------------------------------------------------------------------------------
def test_split_conversation_makes_one_row_per_teacher_turn():
    convo = [{"role": "user", "content": "What is 2+2?"},
             {"role": "assistant", "content": "What do you think?"},
             {"role": "user", "content": "4?"},
             {"role": "assistant", "content": "Yes. Why?"}]
    rows = split_conversation(convo)
    assert [r.reply for r in rows] == ["What do you think?", "Yes. Why?"]
    assert rows[0].prompt == "What is 2+2?"
    assert json.loads(rows[1].prompt) == convo[:3]
    text = split_conversation([("student", "hi"), ("tutor", "hello"), ("student", "help"),
                                   ("tutor", "sure")], teacher="tutor", as_text=True)
    assert text[1].prompt == "student: hi\ntutor: hello\nstudent: help"
    assert split_conversation([("tutor", "welcome")], teacher="tutor") == []


def test_prompts_from_json_context_and_text_files(tmp_path):
    items = [{"context": "Tutor: Let's add fractions.", "student_message": "How?"},
             {"context": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"}],
              "student_message": "help me", "reply": "With what?"},
             {"conversation": [{"role": "user", "content": "a"},
                               {"role": "assistant", "content": "b"}]}]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(items))
    rows = read_prompts_file(path)
    assert rows[0].prompt == "Tutor: Let's add fractions.\nHow?"
    assert json.loads(rows[1].prompt)[-1] == {"role": "user", "content": "help me"}
    assert rows[1].reply == "With what?" and (rows[2].prompt, rows[2].reply) == ("a", "b")
    txt = tmp_path / "p.txt"
    txt.write_text("first\n\nsecond\n")
    assert [r.prompt for r in read_prompts_file(txt)] == ["first", "second"]
    path.write_text(json.dumps([{"context": "x"}]))
    with pytest.raises(DataError, match="item 0: no 'student_message'"):
        read_prompts_file(path)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="generate.builder is 'best'"):
        GenerateConfig(builder="best", source_dataset="x")
    with pytest.raises(ConfigError, match="exactly one of source_dataset or prompts_file"):
        GenerateConfig(output="o")
    with pytest.raises(ConfigError, match="Unknown generate setting"):
        GenerateConfig.from_dict({"source_dataset": "x", "temprature": 1})
    with pytest.raises(ConfigError, match="sampling.temperature"):
        GenerateConfig.from_dict({"source_dataset": "x", "sampling": {"temperature": 0}})


def test_example_configs_load():
    from dpo_core.recipes import recipe_path, recipe_paths

    paths = recipe_paths("generate")
    assert {p.stem for p in paths} >= {"best-of-n-lexicon", "teacher-childes"}
    for path in paths:
        cfg = load_config(path)
        assert cfg.output and cfg.source_dataset
    teacher = load_config(recipe_path("generate", "teacher-childes"))
    assert teacher.system_prompt == CHILDES_SYSTEM_PROMPT


def test_preview_saves_nothing(seeded):
    result = preview(config(limit=20), n=2, store=seeded)
    assert len(result["pairs"]) == 2 and result["speaker_tag"] == "*CHI:"
    assert seeded.scalar("SELECT COUNT(*) FROM datasets WHERE name='out'") == 0


# -- the real job path: CLI -> job -> runner -> dataset ----------------------------------------------
def test_generate_cli_runs_a_background_build(seeded, tmp_path, capsys):
    from dpo_core.cli.main import main as cli_main

    path = tmp_path / "yaml"
    path.write_text("builder: best-of-n\noutput: bon\nmodel: builtin:tiny\n"
                    "source_dataset: demo-instruct\nlimit: 4\nn: 2\nmin_margin: 0.0\n"
                    "sampling:\n  max_new_tokens: 6\n")
    assert cli_main(["generate", str(path), "--detach", "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]
    job = wait_job(seeded, job_id)
    assert job["status"] == "completed", job["error_text"]
    assert job["kind"] == "generate" and (job["step"], job["total_steps"]) == (4, 4)
    assert job["result"]["dataset"] == "bon"
    assert job["result"]["kept"] == count_pairs(seeded, get_dataset(seeded, "bon").id)
    assert job_status(seeded, job_id)["status"] == "completed"
    assert time.time() - job["finished"] >= 0


# -- the Generate page, through app.py -----------------------------------------------------------
def test_generate_page_previews_builds_and_opens_the_dataset(seeded, monkeypatch):

    from tests.support import open_page

    monkeypatch.setenv("DPO_LAB_NO_PREPARE", "1")
    at = open_page("pages/generate.py", timeout=180)
    next(r for r in at.radio if r.label == "Builder").set_value("best-of-n").run()
    next(s for s in at.selectbox if s.label == "Dataset").set_value("demo-instruct").run()
    next(n for n in at.number_input if n.label.startswith("Prompts")).set_value(3)
    next(n for n in at.number_input if n.label == "max_new_tokens").set_value(6)
    next(n for n in at.number_input if n.label == "Minimum margin").set_value(0.0)
    next(t for t in at.text_input if t.label == "Model").set_value(TINY_SPEC)
    next(t for t in at.text_input if t.label == "New dataset name").set_value("from-page")
    next(b for b in at.button if b.label == "Preview").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) >= 1  # the first prompts' pairs, nothing saved
    assert seeded.scalar("SELECT COUNT(*) FROM datasets WHERE name='from-page'") == 0
    next(b for b in at.button if b.label == "Start").click().run()
    job_id = at.session_state["generate_job"]
    assert wait_job(seeded, job_id)["status"] == "completed"
    at.run()
    assert any("completed" in s.value for s in at.subheader)
    next(b for b in at.button if b.label == "Open from-page in Data").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["dataset"] == "from-page"
    assert at.title[0].value == "Data"


@pytest.mark.slow
def test_teacher_on_the_default_model_writes_tagged_child_replies(workspace_with_default, store):
    seed_workspace(store)
    cfg = GenerateConfig.from_dict({
        "builder": "teacher", "output": "childes-teacher", "source_dataset": "demo-childes",
        "limit": 4, "batch_size": 4, "sampling": {"max_new_tokens": 16}})
    result = run_build(cfg, Ctx(store))
    pairs = pairs_of(store, "childes-teacher")
    assert result["kept"] == 4 and result["flagged"] == 0
    assert all(p.chosen.startswith("*CHI: ") and len(p.chosen) > len("*CHI: ") + 2 for p in pairs)
    assert get_dataset(store, "childes-teacher").recipe["model"] == "builtin:smollm2-135m-instruct"
