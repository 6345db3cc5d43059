"""What a pair build does: the builder (teacher, weak model, best-of-N), where prompts come
from, the model(s), sampling and the output dataset; read from recipes/generate/*.yaml."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..chat.sampling import SamplingSettings
from ..evaluation.judges import JUDGES
from ..fields import build, check, read_yaml, setting
from ..models import DEFAULT_SPEC

BUILDERS = ("teacher", "weak", "best-of-n")
CHILDES_SYSTEM_PROMPT = (
    "You are a young child having a conversation with your mother. When your mother says "
    "something, you should answer as a typical kind and natural-sounding child. Do NOT repeat her "
    "words. Instead, give a new, relevant answer that shows understanding. Keep it short and "
    "child-like.")


@dataclass
class GenerateConfig:
    """One pair build: which builder, where prompts come from, which model(s), what to write."""

    builder: str = setting("best-of-n", "teacher: a model writes chosen (original becomes "
                           "rejected); weak: a small model writes rejected (chosen is known); "
                           "best-of-n: sample N, a judge picks best/worst.")
    output: str = setting("", "Name of the new dataset. Running the same config again resumes "
                              "an unfinished build.")
    model: str = setting(DEFAULT_SPEC, "Model spec that writes replies (teacher, weak model or "
                                       "best-of-N base model).")
    source_dataset: str = setting("", "Take prompts (and known replies) from this dataset.")
    source_split: str = setting("", "Only this split of the dataset (empty: all).")
    prompts_file: str = setting("", "Or a file: .json list of {context, student_message} "
                                    "(history + last message; optional reply) or "
                                    "{conversation: [...]}, or .txt with one prompt per line.")
    limit: int = setting(0, "Use only the first N prompts (0 = all).")
    system_prompt: str = setting(CHILDES_SYSTEM_PROMPT, "Teacher builder: the instruction the "
                                                        "teacher model gets.")
    teacher_writes: str = setting("chosen", "Teacher builder: the generated reply is 'chosen' "
                                            "(original becomes rejected) or 'rejected' "
                                            "(original stays chosen).")
    speaker_tag: str = setting("auto", "Tag put before generated replies: 'auto' (the "
                                       "source's, e.g. *CHI:), a tag, or 'none'.")
    n: int = setting(4, "Best-of-N: candidates sampled per prompt.")
    judge: str = setting("lexicon", "Best-of-N judge: lexicon (offline VADER sentiment), "
                                    "reward-model, llm.")
    judge_model: str = setting("", "Model spec of the reward-model or LLM judge.")
    judge_template: str = setting("", "LLM judge prompt with {prompt}, {a}, {b} (empty: the "
                                      "default).")
    min_margin: float = setting(0.05, "Best-of-N: pairs whose best-worst score margin is below "
                                      "this are dropped.")
    batch_size: int = setting(8, "Prompts generated together (left padding); also the chunk "
                                 "saved at once.")
    seed: int = setting(0, "Same seed and settings: same pairs.")
    sampling: SamplingSettings = setting(SamplingSettings(), "temperature, top_p, top_k, "
                                         "max_new_tokens, repetition_penalty.")

    def __post_init__(self):
        for ok, name, fix in (
                (self.builder in BUILDERS, "builder", f"use one of {BUILDERS}"),
                (self.teacher_writes in ("chosen", "rejected"), "teacher_writes",
                 "use 'chosen' or 'rejected'"),
                (self.judge in JUDGES, "judge", f"use one of {JUDGES}"),
                (self.judge == "lexicon" or bool(self.judge_model), "judge_model",
                 f"give a model spec for the {self.judge} judge"),
                (self.n >= 2, "n", "sample at least 2 candidates per prompt"),
                (self.min_margin >= 0, "min_margin", "use 0 or more"),
                (self.batch_size >= 1, "batch_size", "use at least 1"),
                (self.limit >= 0, "limit", "use 0 (all) or a positive count"),
                (bool(self.model), "model", "give a model spec")):
            check(ok, f"generate.{name}", getattr(self, name), f"For {name}, {fix}.")
        check(bool(self.source_dataset) != bool(self.prompts_file), "generate.source_dataset",
              self.source_dataset or "(empty)",
              "For source_dataset, give exactly one of source_dataset or prompts_file.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GenerateConfig:
        return build(cls, data, "generate setting")


def load_config(path: str | Path) -> GenerateConfig:
    """A GenerateConfig from a YAML file (recipes/generate/*.yaml)."""
    return GenerateConfig.from_dict(read_yaml(path, "Config file",
                                              "recipes/generate/best-of-n-lexicon.yaml"))
