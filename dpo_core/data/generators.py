"""Pair builders that generate text: teacher-written chosen replies, weak-model rejected replies
and best-of-N with a judge (builder 1, transcripts, lives in builders.py).

Every build writes a NEW dataset whose recipe records how it was made (builder, model, sampling,
seed, source, the whole config) and its progress. Prompts are generated in left-padded batches;
each finished chunk of pairs is saved in one transaction together with the progress, so a
cancelled build keeps what it finished and the same config run again continues from there.

Dataset format: when the source replies carry a speaker tag (`*CHI:`), a generated reply gets the
same tag, and every pair is checked before saving: a reply without the expected tag is flagged
`speaker-tag` (the synthetic CHILDES set lost its tags; here that cannot pass unnoticed).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, DataError
from ..generation import SamplingSettings, generate_batch
from ..models import DEFAULT_SPEC
from ..store import Store, dumps, open_store
from .datasets import Pair, create_dataset, get_dataset, insert_pairs, iter_pairs

BuilderKind = Literal["teacher", "weak", "best-of-n"]
BUILDERS = ("teacher", "weak", "best-of-n")
JUDGES = ("lexicon", "reward-model", "llm")
CHILDES_SYSTEM_PROMPT = (
    "You are a young child having a conversation with your mother. When your mother says "
    "something, you should answer as a typical kind and natural-sounding child. Do NOT repeat her "
    "words. Instead, give a new, relevant answer that shows understanding. Keep it short and "
    "child-like.")
SPEAKER_TAG = re.compile(r"\s*(\*[A-Z][A-Z0-9]{1,5}:)\s*")  # as in data/checks.py
TARGET = "dpo_core.data.generators:run_generate"


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
@dataclass
class GenerateConfig:
    """One pair build: which builder, where prompts come from, which model(s), what to write."""

    builder: str = field(default="best-of-n", metadata={
        "help": "teacher: a model writes chosen (original becomes rejected); weak: a small model "
                "writes rejected (chosen is known); best-of-n: sample N, a judge picks best/worst."})
    output: str = field(default="", metadata={"help": "Name of the new dataset. Running the same "
                                              "config again resumes an unfinished build."})
    model: str = field(default=DEFAULT_SPEC, metadata={
        "help": "Model spec that writes replies (teacher, weak model or best-of-N base model)."})
    source_dataset: str = field(default="", metadata={
        "help": "Take prompts (and known replies) from this dataset."})
    source_split: str = field(default="", metadata={"help": "Only this split of the dataset "
                                                    "(empty: all)."})
    prompts_file: str = field(default="", metadata={
        "help": "Or a file: .json list of {context, student_message} (history + last message; "
                "optional reply) or {conversation: [...]}, or .txt with one prompt per line."})
    limit: int = field(default=0, metadata={"help": "Use only the first N prompts (0 = all)."})
    system_prompt: str = field(default=CHILDES_SYSTEM_PROMPT, metadata={
        "help": "Teacher builder: the instruction the teacher model gets."})
    teacher_writes: str = field(default="chosen", metadata={
        "help": "Teacher builder: the generated reply is 'chosen' (original becomes rejected) or "
                "'rejected' (original stays chosen)."})
    speaker_tag: str = field(default="auto", metadata={
        "help": "Tag put before generated replies: 'auto' (the source's, e.g. *CHI:), a tag, or "
                "'none'."})
    n: int = field(default=4, metadata={"help": "Best-of-N: candidates sampled per prompt."})
    judge: str = field(default="lexicon", metadata={
        "help": "Best-of-N judge: lexicon (offline VADER sentiment), reward-model, llm."})
    judge_model: str = field(default="", metadata={"help": "Model spec of the reward-model or "
                                                   "LLM judge."})
    judge_template: str = field(default="", metadata={"help": "LLM judge prompt with {prompt}, "
                                                      "{a}, {b} (empty: the default)."})
    min_margin: float = field(default=0.05, metadata={
        "help": "Best-of-N: pairs whose best-worst score margin is below this are dropped."})
    batch_size: int = field(default=8, metadata={"help": "Prompts generated together (left "
                                                 "padding); also the chunk saved at once."})
    seed: int = field(default=0, metadata={"help": "Same seed and settings: same pairs."})
    sampling: SamplingSettings = field(default_factory=SamplingSettings, metadata={
        "help": "temperature, top_p, top_k, max_new_tokens, repetition_penalty."})

    def __post_init__(self):
        if isinstance(self.sampling, dict):
            self.sampling = SamplingSettings(**self.sampling)
        _require(self.builder in BUILDERS, "builder", self.builder, f"use one of {BUILDERS}")
        _require(self.teacher_writes in ("chosen", "rejected"), "teacher_writes",
                 self.teacher_writes, "use 'chosen' or 'rejected'")
        _require(self.judge in JUDGES, "judge", self.judge, f"use one of {JUDGES}")
        _require(self.judge == "lexicon" or bool(self.judge_model), "judge_model",
                 self.judge_model, f"give a model spec for the {self.judge} judge")
        _require(self.n >= 2, "n", self.n, "sample at least 2 candidates per prompt")
        _require(self.min_margin >= 0, "min_margin", self.min_margin, "use 0 or more")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "use at least 1")
        _require(self.limit >= 0, "limit", self.limit, "use 0 (all) or a positive count")
        _require(bool(self.source_dataset) != bool(self.prompts_file), "source_dataset",
                 self.source_dataset or "(empty)",
                 "give exactly one of source_dataset or prompts_file")
        _require(bool(self.model), "model", self.model, "give a model spec")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GenerateConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown generate setting(s): {', '.join(unknown)}.",
                              f"Use only: {', '.join(sorted(known))}.")
        sampling = data.get("sampling") or {}
        bad = sorted(set(sampling) - {f.name for f in fields(SamplingSettings)})
        if bad:
            raise ConfigError(f"Unknown sampling setting(s): {', '.join(bad)}.",
                              "Use temperature, top_p, top_k, max_new_tokens, "
                              "repetition_penalty, no_repeat_ngram_size, greedy, seed.")
        return cls(**{**data, "sampling": SamplingSettings(**sampling)})


def _require(ok: bool, name: str, value, fix: str) -> None:
    if not ok:
        raise ConfigError(f"generate.{name} is {value!r}.", f"For {name}, {fix}.")


def load_config(path: str | Path) -> GenerateConfig:
    """A GenerateConfig from a YAML file (recipes/generate-*.yaml)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.",
                          "Pass a YAML file such as recipes/generate-best-of-n-lexicon.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}.", "Fix the line named above.") \
            from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a mapping of settings.",
                          "Write one `setting: value` per line.")
    return GenerateConfig.from_dict(data)


# ---------------------------------------------------------------------------------------
# Prompts: from a dataset, a JSON list, a text file; long conversations split into rows
# ---------------------------------------------------------------------------------------
@dataclass
class SourceRow:
    """A prompt and, where known, its original reply (the chosen of a source pair)."""

    prompt: str
    reply: str = ""
    other: str = ""  # the source pair's rejected reply, if any
    origin: str = ""


def split_conversation(messages: Sequence, teacher: str = "assistant",
                       as_text: bool = False) -> list[SourceRow]:
    """Each teacher turn becomes a row: prompt = the conversation before it, reply = the turn.

    `messages` are {role, content} dicts or (speaker, text) tuples. The prompt is a JSON message
    list (teacher turns as `assistant`, the others as `user`), or `Speaker: text` lines with
    `as_text=True`. A teacher turn with nothing before it gives no row.
    """
    turns = [(m["role"], m["content"]) if isinstance(m, dict) else (m[0], m[1])
             for m in messages]
    rows = []
    for i, (speaker, text) in enumerate(turns):
        if speaker != teacher or i == 0:
            continue
        before = turns[:i]
        if as_text:
            prompt = "\n".join(f"{s}: {t}" for s, t in before)
        elif len(before) == 1 and before[0][0] != teacher:
            prompt = before[0][1]
        else:
            prompt = json.dumps([{"role": "assistant" if s == teacher else "user", "content": t}
                                 for s, t in before], ensure_ascii=False)
        rows.append(SourceRow(prompt, text, origin=f"turn {i}"))
    return rows


def load_prompts(store: Store, cfg: GenerateConfig) -> list[SourceRow]:
    """The build's prompts in a fixed order (dataset id order, file order)."""
    if cfg.source_dataset:
        ds = get_dataset(store, cfg.source_dataset)
        rows = [SourceRow(p.prompt, p.chosen, p.rejected, f"pair {p.id}")
                for p in iter_pairs(store, ds.id, cfg.source_split or None)]
    else:
        rows = read_prompts_file(cfg.prompts_file)
    if cfg.limit:
        rows = rows[:cfg.limit]
    if not rows:
        raise DataError(f"No prompts found in {cfg.source_dataset or cfg.prompts_file}.",
                        "Pick a dataset (and split) with pairs, or a file with prompts.")
    if cfg.builder in ("teacher", "weak") and not all(r.reply for r in rows):
        missing = next(i for i, r in enumerate(rows) if not r.reply)
        raise DataError(f"Prompt {missing + 1} has no known reply; the {cfg.builder} builder "
                        "needs one per prompt.", "Use a dataset, a JSON file whose entries have "
                        "'reply' (or 'conversation'), or the best-of-n builder.")
    return rows


def read_prompts_file(path: str | Path) -> list[SourceRow]:
    """Prompts from .json ({context, student_message[, reply]} or {conversation}) or .txt."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Prompts file {path} does not exist.",
                        "Pass a .json list of {context, student_message} objects or a .txt file.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json":
        return [SourceRow(line.strip(), origin=f"line {i}")
                for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}.", "Fix the file, or use .txt.") from exc
    if not isinstance(items, list):
        raise DataError(f"{path} holds a {type(items).__name__}, not a list.",
                        "Write a JSON list of {context, student_message} objects.")
    rows: list[SourceRow] = []
    for i, item in enumerate(items):
        rows += _json_rows(item, i, path)
    return rows


def _json_rows(item, i: int, path: Path) -> list[SourceRow]:
    if isinstance(item, str):
        return [SourceRow(item, origin=f"item {i}")]
    if not isinstance(item, dict):
        raise DataError(f"{path}, item {i}: a {type(item).__name__}.",
                        "Each item is {context, student_message} or {conversation: [...]}.")
    if "conversation" in item:
        rows = split_conversation(item["conversation"], item.get("teacher", "assistant"))
        return [replace(r, origin=f"item {i} {r.origin}") for r in rows]
    message = item.get("student_message") or item.get("prompt")
    if not message:
        raise DataError(f"{path}, item {i}: no 'student_message'.",
                        "Each item needs student_message (and optional context, reply).")
    context = item.get("context") or ""
    if isinstance(context, list):  # history as messages: keep it conversational
        msgs = [{"role": m.get("role", "user"), "content": m.get("content", "")}
                if isinstance(m, dict) else {"role": "user", "content": str(m)} for m in context]
        prompt = json.dumps([*msgs, {"role": "user", "content": message}], ensure_ascii=False)
    else:
        prompt = f"{context}\n{message}".strip()
    reply = item.get("reply") or item.get("chosen") or ""
    return [SourceRow(prompt, reply, item.get("rejected") or "", origin=f"item {i}")]


# ---------------------------------------------------------------------------------------
# Dataset format: speaker tags
# ---------------------------------------------------------------------------------------
def leading_tag(text: str) -> str | None:
    match = SPEAKER_TAG.match(text or "")
    return match.group(1) if match else None


def source_tag(rows: Sequence[SourceRow]) -> str | None:
    """The speaker tag most known replies start with (e.g. *CHI:), if at least half carry one."""
    replies = [r.reply for r in rows if r.reply] + [r.other for r in rows if r.other]
    if not replies:
        return None
    tag, count = Counter(leading_tag(t) for t in replies).most_common(1)[0]
    return tag if tag and count * 2 >= len(replies) else None


def expected_tag(cfg: GenerateConfig, rows: Sequence[SourceRow]) -> str | None:
    if cfg.speaker_tag == "none":
        return None
    if cfg.speaker_tag == "auto":
        return source_tag(rows)
    return cfg.speaker_tag


def to_dataset_format(reply: str, tag: str | None) -> str:
    """A generated reply in the dataset's shape: the speaker tag in front, exactly once."""
    text = " ".join(reply.split())
    if not tag:
        return text
    while (found := leading_tag(text)) is not None and found == tag:
        text = text[SPEAKER_TAG.match(text).end():]
    return f"{tag} {text}".strip()


def check_pair(pair: Pair, tag: str | None) -> Pair:
    """Flag a pair before saving: replies missing the dataset's speaker tag, empty or equal."""
    flags = set(pair.flags)
    for reply in (pair.chosen, pair.rejected):
        if tag and leading_tag(reply) != tag:
            flags.add("speaker-tag")
        if not SPEAKER_TAG.sub("", reply).strip():
            flags.add("empty")
    if pair.chosen.strip() == pair.rejected.strip():
        flags.add("identical")
    pair.flags = sorted(flags)
    return pair


def strip_tag(text: str) -> str:
    """The utterance without its speaker tag, for instruction models (`*MOT: hi` -> `hi`)."""
    match = SPEAKER_TAG.match(text)
    return text[match.end():] if match else text


# ---------------------------------------------------------------------------------------
# Generating
# ---------------------------------------------------------------------------------------
_caches: dict[str, object] = {}


def load_model(spec: str):
    """The model for a spec, loaded once per process and workspace (preview reuses it)."""
    from ..generation import ModelCache
    from ..workspace import get_workspace

    ws = get_workspace()
    cache = _caches.setdefault(str(ws.home), ModelCache(ws))
    return cache.get(spec)


def render_prompts(side, rows: Sequence[SourceRow], system: str | None,
                   tag: str | None) -> list[str]:
    """Prompt texts for the model: chat models get the utterance without tags (and the system
    prompt); plain models continue the dataset's text up to the reply tag."""
    fmt = side.prompt_format
    if fmt.kind == "chat":
        return [fmt.render_prompt(strip_tag(r.prompt) if tag else r.prompt, side.tokenizer,
                                  system=system) for r in rows]
    texts = [fmt.render_prompt(r.prompt, side.tokenizer, system=system or None) for r in rows]
    return [t + fmt.separator + tag if tag else t for t in texts]


def generate_texts(side, prompt_texts: Sequence[str], settings: SamplingSettings) -> list[str]:
    """Replies to rendered prompts in one left-padded batch."""
    return [r.text for r in generate_batch(side, prompt_texts, settings)]


# ---------------------------------------------------------------------------------------
# The three builders: each turns a chunk of rows into (pairs, dropped)
# ---------------------------------------------------------------------------------------
@dataclass
class Build:
    """What a builder needs while it runs: config, model side, judge and the dataset's tag."""

    cfg: GenerateConfig
    side: object
    tag: str | None
    judge: object = None


def make_teacher_pairs(build: Build, rows: Sequence[SourceRow], offset: int
                       ) -> tuple[list[Pair], int]:
    """The teacher writes one reply per prompt; original and generated become chosen/rejected."""
    cfg = build.cfg
    texts = render_prompts(build.side, rows, cfg.system_prompt, build.tag)
    replies = generate_texts(build.side, texts, replace(cfg.sampling, seed=cfg.seed))
    pairs = []
    for i, (row, reply) in enumerate(zip(rows, replies, strict=True)):
        written = to_dataset_format(reply, build.tag)
        chosen, rejected = (written, row.reply) if cfg.teacher_writes == "chosen" \
            else (row.reply, written)
        pairs.append(check_pair(Pair(prompt=row.prompt, chosen=chosen, rejected=rejected,
                                     source="teacher", meta=_meta(build, offset + i, row)),
                                build.tag))
    return pairs, 0


def make_weak_pairs(build: Build, rows: Sequence[SourceRow], offset: int
                    ) -> tuple[list[Pair], int]:
    """A weak model writes the rejected reply; the known reply stays chosen."""
    cfg = build.cfg
    texts = render_prompts(build.side, rows, None, build.tag)
    replies = generate_texts(build.side, texts, replace(cfg.sampling, seed=cfg.seed))
    pairs = [check_pair(Pair(prompt=row.prompt, chosen=row.reply,
                             rejected=to_dataset_format(reply, build.tag), source="weak-model",
                             meta=_meta(build, offset + i, row)), build.tag)
             for i, (row, reply) in enumerate(zip(rows, replies, strict=True))]
    return pairs, 0


def make_best_of_n_pairs(build: Build, rows: Sequence[SourceRow], offset: int
                         ) -> tuple[list[Pair], int]:
    """N samples per prompt (seed + k for candidate k), judged; best vs worst if the margin holds."""
    cfg = build.cfg
    texts = render_prompts(build.side, rows, None, build.tag)
    candidates = [generate_texts(build.side, texts, replace(cfg.sampling, seed=cfg.seed + k))
                  for k in range(cfg.n)]
    pairs, dropped = [], 0
    for i, row in enumerate(rows):
        cands = [to_dataset_format(c[i], build.tag) for c in candidates]
        scores = score_candidates(build.judge, row.prompt, cands)
        best = max(range(len(cands)), key=lambda j: scores[j])
        worst = min(range(len(cands)), key=lambda j: scores[j])
        margin = scores[best] - scores[worst]
        if margin < cfg.min_margin or cands[best] == cands[worst]:
            dropped += 1
            continue
        meta = {**_meta(build, offset + i, row), "margin": round(margin, 6),
                "chosen_score": scores[best], "rejected_score": scores[worst],
                "scores": [round(s, 6) for s in scores], "judge": cfg.judge}
        pairs.append(check_pair(Pair(prompt=row.prompt, chosen=cands[best],
                                     rejected=cands[worst], source="best-of-n", meta=meta),
                                build.tag))
    return pairs, dropped


def score_candidates(judge, prompt: str, candidates: Sequence[str]) -> list[float]:
    """One score per candidate: the judge's own score, or (pairwise judges) the mean preference
    over the other candidates, asked in both orders."""
    prompt = strip_tag(prompt)
    if hasattr(judge, "score"):
        return [float(judge.score(prompt, strip_tag(c))) for c in candidates]
    scores = []
    for i, a in enumerate(candidates):
        prefs = [(judge.preference(prompt, a, b) - judge.preference(prompt, b, a)) / 2
                 for j, b in enumerate(candidates) if j != i]
        scores.append(sum(prefs) / len(prefs))
    return scores


def _meta(build: Build, index: int, row: SourceRow) -> dict:
    return {"builder": build.cfg.builder, "model": build.cfg.model, "index": index,
            "origin": row.origin}


MAKERS: dict[str, Callable] = {"teacher": make_teacher_pairs, "weak": make_weak_pairs,
                               "best-of-n": make_best_of_n_pairs}


def prepare_build(cfg: GenerateConfig, rows: Sequence[SourceRow]) -> Build:
    """Load the model (and judge) the builder needs."""
    judge = None
    if cfg.builder == "best-of-n":
        from ..evaluation import make_judge

        judge = make_judge(cfg.judge, cfg.judge_model or None, cfg.judge_template or None)
    return Build(cfg, load_model(cfg.model), expected_tag(cfg, rows), judge)


# ---------------------------------------------------------------------------------------
# Running: a new dataset, written chunk by chunk with its progress; preview
# ---------------------------------------------------------------------------------------
def recipe_for(cfg: GenerateConfig, build: Build | None, total: int) -> dict:
    return {"builder": cfg.builder, "model": cfg.model, "sampling": cfg.sampling.to_dict(),
            "seed": cfg.seed, "source": cfg.source_dataset or cfg.prompts_file,
            "source_split": cfg.source_split, "speaker_tag": build.tag if build else None,
            "judge": cfg.judge if cfg.builder == "best-of-n" else None,
            "min_margin": cfg.min_margin if cfg.builder == "best-of-n" else None,
            "config": cfg.to_dict(),
            "progress": {"done": 0, "total": total, "kept": 0, "dropped": 0, "complete": False}}


def open_output(store: Store, cfg: GenerateConfig, build: Build, rows: Sequence[SourceRow]):
    """The output dataset: new, or the unfinished one this same config started (resume)."""
    if check_output(store, cfg) is None:
        parent, fmt = None, build.side.prompt_format.to_dict()
        if cfg.source_dataset:
            src = get_dataset(store, cfg.source_dataset)
            parent, fmt = src.id, (src.prompt_format or fmt)
        return create_dataset(store, cfg.output, parent_id=parent, prompt_format=fmt,
                              recipe=recipe_for(cfg, build, len(rows)),
                              description=f"Generated by the {cfg.builder} builder.")
    return get_dataset(store, cfg.output)


def check_output(store: Store, cfg: GenerateConfig) -> dict | None:
    """None for a new name; the progress of an unfinished build of this same config (resume);
    DataError for a name taken by anything else."""
    if not cfg.output:
        raise ConfigError("generate.output is empty.", "Name the new dataset (output: NAME).")
    if store.query_one("SELECT 1 FROM datasets WHERE name=?", (cfg.output,)) is None:
        return None
    ds = get_dataset(store, cfg.output)
    progress = ds.recipe.get("progress", {})
    if ds.recipe.get("config") != cfg.to_dict():
        raise DataError(f"A dataset named '{cfg.output}' already exists and was not made by "
                        "this config.", "Choose another output name.")
    if progress.get("complete"):
        raise DataError(f"The build '{cfg.output}' is already complete "
                        f"({progress.get('kept', 0)} pairs).", "Choose another output name.")
    return progress


def save_chunk(store: Store, ds, pairs: list[Pair], progress: dict) -> None:
    """Pairs and the progress that includes them, in one transaction (a crash loses neither)."""
    with store.write() as conn:
        insert_pairs(store, ds.id, pairs)
        recipe = json.loads(conn.execute("SELECT recipe_json FROM datasets WHERE id=?",
                                         (ds.id,)).fetchone()[0])
        recipe["progress"] = progress
        conn.execute("UPDATE datasets SET recipe_json=? WHERE id=?", (dumps(recipe), ds.id))


def run_generate(config: dict | GenerateConfig, ctx=None) -> dict:
    """The job target: build pairs chunk by chunk, stop between chunks when cancelled."""
    cfg = config if isinstance(config, GenerateConfig) else GenerateConfig.from_dict(config)
    store = ctx.store if ctx is not None else open_store()
    rows = load_prompts(store, cfg)
    build = prepare_build(cfg, rows)
    ds = open_output(store, cfg, build, rows)
    progress = dict(get_dataset(store, ds.id).recipe["progress"])
    report = ctx.progress if ctx is not None else (lambda *a, **k: None)
    report(progress["done"], len(rows), kept=progress["kept"], dropped=progress["dropped"],
           dataset=cfg.output, resumed_at=progress["done"])
    maker = MAKERS[cfg.builder]
    for start in range(progress["done"], len(rows), cfg.batch_size):
        if ctx is not None and ctx.cancelled():
            break
        pairs, dropped = maker(build, rows[start:start + cfg.batch_size], start)
        progress = {**progress, "done": min(start + cfg.batch_size, len(rows)),
                    "kept": progress["kept"] + len(pairs), "dropped": progress["dropped"] + dropped,
                    "flagged": progress.get("flagged", 0) + sum(1 for p in pairs if p.flags)}
        progress["complete"] = progress["done"] >= len(rows)
        save_chunk(store, ds, pairs, progress)
        report(progress["done"], len(rows), kept=progress["kept"], dropped=progress["dropped"],
               flagged=progress["flagged"])
    return {"dataset": cfg.output, **progress}


def preview(config: dict | GenerateConfig, n: int = 3, store: Store | None = None) -> dict:
    """The first `n` results without saving anything: pairs made and how many were dropped."""
    cfg = config if isinstance(config, GenerateConfig) else GenerateConfig.from_dict(config)
    rows = load_prompts(store or open_store(), cfg)[:n]
    build = prepare_build(cfg, rows)
    pairs, dropped = MAKERS[cfg.builder](build, rows, 0)
    return {"pairs": [{**p.as_record(), "flags": p.flags, "meta": p.meta} for p in pairs],
            "dropped": dropped, "speaker_tag": build.tag}


def start_generate(store: Store, config: dict | GenerateConfig) -> str:
    """Check the config and prompts here (fast errors), then run the build as a background job."""
    from ..jobs import start_job

    cfg = config if isinstance(config, GenerateConfig) else GenerateConfig.from_dict(config)
    check_output(store, cfg)
    load_prompts(store, cfg)
    return start_job(store, "generate", cfg.to_dict(), TARGET, name=cfg.output)
