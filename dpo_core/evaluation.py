"""Evaluation: pair accuracy, minimal-pair suites, multiple choice and generation win rate.

Scoring convention (the reference any independent check must follow):
- a pair's text is `prompt_format.render_prompt(prompt) + prompt_format.render_reply(reply)`;
  for plain formats that is `prompt + " " + reply`, as the CHILDES work scored it;
- the whole text is tokenized once (`tokenizer(text)`, special tokens added unless the text
  already starts with the BOS token); with `scope="reply"` the reply starts where the tokenized
  prompt and the tokenized text first differ (TRL's `common_prefix_length`, so a BPE merge across
  the boundary is never scored as prompt), with `scope="full"` every token after the first is
  scored (the mean is then minus the causal LM loss of the text);
- a token's log-probability is `log_softmax(logits[t - 1])[ids[t]]` in float32;
- `mean-logp` averages the scored tokens, `sum-logp` adds them; a pair is correct when the
  chosen score is strictly greater than the rejected one (TRL's `rewards/accuracies` rule).

Batching only changes speed: texts are deduplicated, sorted by length, right-padded with an
attention mask, and the LM head runs on the scored positions only. Pairs also run the prefix their
two texts share (the prompt, a speaker tag) once and score each text's rest on its cache.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from .errors import ConfigError, DataError, NotFoundError
from .formats import PromptFormat
from .store import Store, dumps, now

log = logging.getLogger(__name__)
Method = Literal["mean-logp", "sum-logp", "implicit-reward"]
Scope = Literal["reply", "full"]
METHODS = ("mean-logp", "sum-logp", "implicit-reward")
SCOPES = ("reply", "full")
Progress = Callable[[float, str], None]
Encoded = tuple[tuple[int, ...], int]  # token ids, index of the first scored token

# TRL JSON files such as the HellaSwag noise sets concatenate prompt and reply as they are.
CONCAT_FORMAT = PromptFormat(kind="plain", template="{prompt}", separator="")


def _noop(fraction: float, message: str) -> None:
    pass


# ---------------------------------------------------------------------------------------
# Tokenizing and scoring
# ---------------------------------------------------------------------------------------
def _tokenize(tokenizer, text: str) -> list[int]:
    bos = getattr(tokenizer, "bos_token", None)
    special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def encode_text(tokenizer, prompt_text: str, reply_text: str, scope: Scope = "reply") -> Encoded:
    """Token ids of `prompt_text + reply_text` and the index of the first scored token."""
    full = _tokenize(tokenizer, prompt_text + reply_text)
    if scope == "full" or not prompt_text:
        return tuple(full), 1
    start = _common_prefix(_tokenize(tokenizer, prompt_text), full)
    return tuple(full), max(start, 1)


def _pad_id(tokenizer) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if value is not None:
            return int(value)
    return 0


def _head_parts(model):
    """(decoder, lm_head) when logits can be computed on selected positions only, else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "final_logit_softcapping", None) \
            or getattr(config, "logit_scale", None) not in (None, 1, 1.0):
        return None
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    return (decoder, head) if decoder is not None and head is not None else None


def _score_batch(model, batch: list[Encoded], pad_id: int) -> list[tuple[float, int]]:
    """Summed log-prob and count of scored tokens for one right-padded batch."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)
    for row, (ids, start) in enumerate(batch):
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, :len(ids)] = 1
        scored[row, start:len(ids)] = True
    device = next(model.parameters()).device
    input_ids, attention = input_ids.to(device), attention.to(device)
    target_mask = scored[:, 1:].to(device)  # token t is predicted at position t - 1
    targets = input_ids[:, 1:][target_mask]
    parts = _head_parts(model)
    if parts is not None:
        hidden = parts[0](input_ids=input_ids, attention_mask=attention).last_hidden_state
        logits = parts[1](hidden[:, :-1][target_mask]).float()
    else:
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
        logits = logits[target_mask].float()
    token_lp = logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
    rows = torch.arange(len(batch), device=device)[:, None].expand_as(target_mask)[target_mask]
    sums = torch.zeros(len(batch), dtype=torch.float64, device=device)
    sums.index_add_(0, rows, token_lp.double())
    counts = target_mask.sum(1)
    return [(float(s), int(c)) for s, c in zip(sums.cpu(), counts.cpu(), strict=False)]


def score_encoded(model, tokenizer, items: Sequence[Encoded], batch_size: int = 16,
                  progress: Progress = _noop) -> list[tuple[float, int]]:
    """(summed log-prob, scored tokens) per item: deduplicated, length-sorted, batched."""
    import torch

    if batch_size < 1:
        raise ConfigError(f"batch_size is {batch_size}.", "Use a batch size of 1 or more.")
    order = sorted(set(items), key=lambda it: (len(it[0]), it))
    pad_id = _pad_id(tokenizer)
    results: dict[Encoded, tuple[float, int]] = {}
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            results.update(zip(batch, _score_batch(model, batch, pad_id), strict=False))
            progress(min(1.0, (i + len(batch)) / max(len(order), 1)),
                     f"Scored {i + len(batch)} of {len(order)} texts")
    return [results[it] for it in items]


def _shared_prefix(a: Encoded, b: Encoded) -> int:
    """How many leading tokens two texts share (their hidden states are identical there)."""
    return _common_prefix(a[0], b[0])


def _score_pair_chunk(model, chunk: list[tuple[Encoded, Encoded]],
                      pad_id: int) -> list[tuple[float, int]]:
    """(sum, count) of both texts of each pair, running their shared prefix once.

    Pass 1 runs each distinct prefix (right-padded batch) and keeps its key/value cache; pass 2
    runs what follows the prefix in each text on top of the cached prefix (a 2-D attention mask
    hides the prefix padding; position ids continue from the prefix's true length). A token t
    is scored from the hidden state at t - 1, taken from pass 1 when t - 1 lies in the prefix.
    """
    import torch

    device = next(model.parameters()).device
    parts = _head_parts(model)
    call = parts[0] if parts is not None else model
    prefixes: dict[tuple[int, ...], int] = {}
    texts = []  # (ids, start, prefix row, prefix length)
    for a, b in chunk:
        n = _shared_prefix(a, b)
        row = prefixes.setdefault(a[0][:n], len(prefixes))
        texts += [(a[0], a[1], row, n), (b[0], b[1], row, n)]
    width = max(len(p) for p in prefixes)
    pre_ids = torch.full((len(prefixes), width), pad_id, dtype=torch.long)
    pre_mask = torch.zeros((len(prefixes), width), dtype=torch.long)
    for ids, row in prefixes.items():
        pre_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        pre_mask[row, :len(ids)] = 1
    pre_ids, pre_mask = pre_ids.to(device), pre_mask.to(device)
    out = call(input_ids=pre_ids, attention_mask=pre_mask, use_cache=True)
    pre_hidden = out.last_hidden_state if parts is not None else None
    pre_logits = None if parts is not None else out.logits
    cache = out.past_key_values
    # pass 2: the rest of each text but its last token (whose prediction nobody scores)
    rest = [max(0, len(ids) - 1 - n) for ids, _, _, n in texts]
    cont_rows = [i for i, r in enumerate(rest) if r > 0]
    cont_hidden = cont_logits = None
    if cont_rows:
        cwidth = max(rest[i] for i in cont_rows)
        c_ids = torch.full((len(cont_rows), cwidth), pad_id, dtype=torch.long)
        c_mask = torch.zeros((len(cont_rows), cwidth), dtype=torch.long)
        c_pos = torch.zeros((len(cont_rows), cwidth), dtype=torch.long)
        for j, i in enumerate(cont_rows):
            ids, _, _, n = texts[i]
            c_ids[j, :rest[i]] = torch.tensor(ids[n:n + rest[i]], dtype=torch.long)
            c_mask[j, :rest[i]] = 1
            c_pos[j] = torch.arange(n, n + cwidth)
        cache.batch_select_indices(torch.tensor([texts[i][2] for i in cont_rows],
                                                device=device))
        mask = torch.cat([pre_mask[[texts[i][2] for i in cont_rows]], c_mask.to(device)], 1)
        out = call(input_ids=c_ids.to(device), attention_mask=mask,
                   position_ids=c_pos.to(device), past_key_values=cache, use_cache=True)
        cont_hidden = out.last_hidden_state if parts is not None else None
        cont_logits = None if parts is not None else out.logits
    # which hidden state predicts each scored token
    cont_of = {i: j for j, i in enumerate(cont_rows)}
    pre_sel, cont_sel, owners_pre, owners_cont, tgt_pre, tgt_cont = [], [], [], [], [], []
    for i, (ids, start, row, n) in enumerate(texts):
        for t in range(max(start, 1), len(ids)):
            if t - 1 < n:
                pre_sel.append((row, t - 1))
                owners_pre.append(i)
                tgt_pre.append(ids[t])
            else:
                cont_sel.append((cont_of[i], t - 1 - n))
                owners_cont.append(i)
                tgt_cont.append(ids[t])
    sums = torch.zeros(len(texts), dtype=torch.float64)
    counts = torch.zeros(len(texts), dtype=torch.long)
    for sel, owners, targets, hidden, logits in (
            (pre_sel, owners_pre, tgt_pre, pre_hidden, pre_logits),
            (cont_sel, owners_cont, tgt_cont, cont_hidden, cont_logits)):
        if not sel:
            continue
        # both texts of a pair read the same prefix positions: the head and the log-sum-exp
        # over the vocabulary run once per distinct position
        where: dict[tuple[int, int], int] = {}
        slot = torch.tensor([where.setdefault(rc, len(where)) for rc in sel], device=device)
        rows_t = torch.tensor([r for r, _ in where], device=device)
        cols_t = torch.tensor([c for _, c in where], device=device)
        picked = parts[1](hidden[rows_t, cols_t]) if parts is not None else logits[rows_t, cols_t]
        picked = picked.float()
        tgt = torch.tensor(targets, device=device)
        token_lp = picked[slot, tgt] - torch.logsumexp(picked, -1)[slot]
        owner_t = torch.tensor(owners)
        sums.index_add_(0, owner_t, token_lp.double().cpu())
        counts.index_add_(0, owner_t, torch.ones(len(owners), dtype=torch.long))
    return [(float(s), int(c)) for s, c in zip(sums, counts, strict=True)]


def _runs(items: Sequence, size: int, key) -> Iterator[list]:
    """Consecutive items in lists of at most `size`, a new list wherever `key` changes."""
    run: list = []
    for item in items:
        if run and (len(run) == size or key(item) != key(run[0])):
            yield run
            run = []
        run.append(item)
    if run:
        yield run


def score_encoded_pairs(model, tokenizer, items: Sequence[Encoded], batch_size: int = 16,
                        progress: Progress = _noop) -> list[tuple[float, int]]:
    """Like score_encoded for interleaved (chosen, rejected, ...) items, but each pair's shared
    prefix (the prompt, and the speaker tag both replies start with) is run once."""
    import torch

    if batch_size < 1:
        raise ConfigError(f"batch_size is {batch_size}.", "Use a batch size of 1 or more.")
    pairs = list(zip(items[0::2], items[1::2], strict=True))
    if any(_shared_prefix(a, b) < 1 for a, b in pairs):
        return score_encoded(model, tokenizer, items, batch_size, progress)

    def widths(pair) -> tuple[int, int]:  # a chunk pads both passes to its longest
        n = _shared_prefix(*pair)
        return max(len(pair[0][0]), len(pair[1][0])) - n, n

    width = {pair: widths(pair) for pair in set(pairs)}  # (rest, prefix) lengths
    unique = sorted(width, key=lambda p: (*width[p], p))
    pad_id = _pad_id(tokenizer)
    results: dict[tuple[Encoded, Encoded], tuple] = {}
    done = 0
    with torch.inference_mode():
        # about batch_size texts a chunk, and one length of what follows the prefix in each
        for chunk in _runs(unique, max(1, batch_size // 2), key=lambda p: width[p][0]):
            try:
                scored = _score_pair_chunk(model, chunk, pad_id)
            except (AttributeError, NotImplementedError, TypeError) as exc:
                if done:  # it worked on earlier chunks: a real error, not a missing cache API
                    raise
                # an architecture without a reusable KV cache: run the texts whole
                log.info("shared-prefix scoring unavailable (%s); scoring whole texts", exc)
                return score_encoded(model, tokenizer, items, batch_size, progress)
            for k, pair in enumerate(chunk):
                results[pair] = (scored[2 * k], scored[2 * k + 1])
            done += len(chunk)
            progress(min(1.0, done / max(len(unique), 1)),
                     f"Scored {done} of {len(unique)} pairs")
    return [x for pair in pairs for x in results[pair]]


def _reduce(total: float, count: int, method: str) -> float:
    if method == "sum-logp":
        return total
    return total / count if count else 0.0


def _fields(pair) -> tuple[str, str, str]:
    if isinstance(pair, dict):
        return pair["prompt"], pair["chosen"], pair["rejected"]
    return pair.prompt, pair.chosen, pair.rejected


def _check(method: str, scope: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"Unknown evaluation method '{method}'.",
                          f"Use one of: {', '.join(METHODS)}.")
    if scope not in SCOPES:
        raise ConfigError(f"Unknown scope '{scope}'.", "Use 'reply' or 'full'.")


def encode_pairs(tokenizer, prompt_format: PromptFormat, pairs: Iterable, scope: Scope = "reply",
                 add_eos: bool = False) -> list[Encoded]:
    """Chosen and rejected encodings, interleaved (chosen, rejected, chosen, ...)."""
    eos = getattr(tokenizer, "eos_token", None) or ""
    out: list[Encoded] = []
    for pair in pairs:
        prompt, chosen, rejected = _fields(pair)
        prompt_text = prompt_format.render_prompt(prompt, tokenizer)
        for reply in (chosen, rejected):
            reply_text = prompt_format.render_reply(reply, tokenizer)
            if add_eos and eos and not reply_text.endswith(eos):
                reply_text += eos
            out.append(encode_text(tokenizer, prompt_text, reply_text, scope))
    return out


def score_pairs(model, tokenizer, prompt_format: PromptFormat, pairs: Sequence,
                method: Method = "mean-logp", scope: Scope = "reply", batch_size: int = 16,
                progress: Progress = _noop, add_eos: bool = False,
                shared_prefix: bool = True) -> list[tuple[float, float]]:
    """(chosen_score, rejected_score) per pair with `mean-logp` or `sum-logp`.

    `shared_prefix` runs the prompt (and whatever else both replies start with) once per pair;
    off, each text runs whole (the scores agree to float rounding).
    """
    _check(method, scope)
    if method == "implicit-reward":
        raise ConfigError("score_pairs takes mean-logp or sum-logp.",
                          "Use implicit_rewards() for implicit-reward.")
    items = encode_pairs(tokenizer, prompt_format, pairs, scope, add_eos)
    scored = (score_encoded_pairs if shared_prefix else score_encoded)(
        model, tokenizer, items, batch_size, progress)
    scores = [_reduce(t, c, method) for t, c in scored]
    return list(zip(scores[0::2], scores[1::2], strict=False))


def implicit_rewards(model, tokenizer, prompt_format: PromptFormat, pairs: Sequence,
                     beta: float = 0.1, reference=None, batch_size: int = 16,
                     progress: Progress = _noop) -> list[tuple[float, float]]:
    """TRL's implicit rewards beta * (log pi - log pi_ref) of chosen and rejected replies.

    Like TRL on string data, the reply gets the EOS token when it does not end with it. Without
    `reference` the model must be a PEFT model: the reference is the same model, adapter off.
    """
    def half(fraction: float, message: str, offset: float) -> None:
        progress(offset + fraction / 2, message)

    policy = score_pairs(model, tokenizer, prompt_format, pairs, "sum-logp", "reply", batch_size,
                         lambda f, m: half(f, m, 0.0), add_eos=True)
    ref_progress = lambda f, m: half(f, "Reference: " + m, 0.5)  # noqa: E731
    if reference is None:
        if not hasattr(model, "disable_adapter"):
            raise ConfigError("implicit-reward needs a reference model.",
                              "Evaluate a LoRA run (run:<id>) or pass the base model as reference.")
        with model.disable_adapter():
            ref = score_pairs(model, tokenizer, prompt_format, pairs, "sum-logp", "reply",
                              batch_size, ref_progress, add_eos=True)
    else:
        ref = score_pairs(reference, tokenizer, prompt_format, pairs, "sum-logp", "reply",
                          batch_size, ref_progress, add_eos=True)
    return [(beta * (pc - rc), beta * (pr - rr))
            for (pc, pr), (rc, rr) in zip(policy, ref, strict=True)]


# ---------------------------------------------------------------------------------------
# Accuracy with an interval
# ---------------------------------------------------------------------------------------
def bootstrap_ci(correct: Sequence[bool], seed: int = 0, n_boot: int = 1000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `correct` (seeded, reproducible)."""
    import numpy as np

    values = np.asarray(correct, dtype=float)
    if len(values) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def summarize_scores(scores: Sequence[tuple[float, float]], seed: int = 0,
                     n_boot: int = 1000) -> dict:
    """accuracy, ci_low, ci_high, mean_margin, n and per_pair from (chosen, rejected) scores."""
    correct = [c > r for c, r in scores]
    n = len(scores)
    low, high = bootstrap_ci(correct, seed, n_boot)
    per_pair = [{"index": i, "chosen_score": c, "rejected_score": r, "margin": c - r,
                 "correct": ok}
                for i, ((c, r), ok) in enumerate(zip(scores, correct, strict=True))]
    return {"accuracy": sum(correct) / n if n else 0.0, "ci_low": low, "ci_high": high,
            "mean_margin": sum(c - r for c, r in scores) / n if n else 0.0, "n": n,
            "per_pair": per_pair}


def pair_accuracy(model, tokenizer, prompt_format: PromptFormat, pairs: Sequence,
                  method: Method = "mean-logp", scope: Scope = "reply", batch_size: int = 16,
                  beta: float = 0.1, reference=None, seed: int = 0, n_boot: int = 1000,
                  progress: Progress = _noop) -> dict:
    """Pair accuracy with a bootstrap 95% interval, mean margin and per-pair results."""
    _check(method, scope)
    if method == "implicit-reward":
        scores = implicit_rewards(model, tokenizer, prompt_format, pairs, beta, reference,
                                  batch_size, progress)
    else:
        scores = score_pairs(model, tokenizer, prompt_format, pairs, method, scope, batch_size,
                             progress)
    return {**summarize_scores(scores, seed, n_boot), "method": method,
            "scope": "reply" if method == "implicit-reward" else scope}


# ---------------------------------------------------------------------------------------
# Minimal-pair suites (BLiMP layout) and multiple choice
# ---------------------------------------------------------------------------------------
def read_suite(folder: str | Path, limit: int | None = None) -> dict[str, list[tuple[str, str]]]:
    """{file stem: [(good, bad), ...]} from a folder of .txt files alternating good/bad lines."""
    folder = Path(folder)
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise DataError(f"No .txt files in {folder}.",
                        "Point at a folder of BLiMP-layout files (good and bad lines alternate).")
    suite = {}
    for f in files:
        lines = [line.strip() for line in f.read_text(encoding="utf-8").splitlines()]
        lines = [line for line in lines if line]
        if len(lines) % 2:
            raise DataError(f"{f} has an odd number of sentences ({len(lines)}).",
                            "Each good sentence needs its bad partner on the next line.")
        pairs = list(zip(lines[0::2], lines[1::2], strict=False))
        suite[f.stem] = pairs[:limit] if limit else pairs
    return suite


def suite_accuracy(model, tokenizer, folder: str | Path, method: Method = "mean-logp",
                   batch_size: int = 16, limit: int | None = None, seed: int = 0,
                   progress: Progress = _noop) -> dict:
    """Accuracy per file and overall: the good sentence must outscore the bad one (scope full)."""
    _check(method, "full")
    suite = read_suite(folder, limit)
    items, keys = [], []
    for name, pairs in suite.items():
        for good, bad in pairs:
            items += [encode_text(tokenizer, "", good, "full"),
                      encode_text(tokenizer, "", bad, "full")]
            keys.append(name)
    scored = [_reduce(t, c, method) for t, c in score_encoded_pairs(model, tokenizer, items,
                                                                     batch_size, progress)]
    scores = list(zip(scored[0::2], scored[1::2], strict=False))
    files = {}
    for name in suite:
        mine = [s for s, k in zip(scores, keys, strict=False) if k == name]
        files[name] = {k: v for k, v in summarize_scores(mine, seed).items() if k != "per_pair"}
    overall = summarize_scores(scores, seed)
    for i, row in enumerate(overall["per_pair"]):
        row["item"] = keys[i]
    return {**overall, "method": method, "scope": "full", "files": files}


@dataclass
class ChoiceItem:
    """A multiple-choice question: context, candidate continuations, index of the right one."""

    context: str
    choices: list[str]
    answer: int


def multiple_choice_accuracy(model, tokenizer, prompt_format: PromptFormat,
                             items: Sequence[ChoiceItem], method: Method = "mean-logp",
                             scope: Scope = "reply", batch_size: int = 16, seed: int = 0,
                             progress: Progress = _noop) -> dict:
    """Accuracy where the best-scoring choice wins (ties go to the first)."""
    _check(method, scope)
    encoded = []
    for i, item in enumerate(items):
        if not item.choices or not 0 <= item.answer < len(item.choices):
            raise DataError(f"Choice item {i} has {len(item.choices)} choices and answer "
                            f"{item.answer}.", "Give at least one choice and a valid answer index.")
        prompt_text = prompt_format.render_prompt(item.context, tokenizer)
        encoded += [encode_text(tokenizer, prompt_text, prompt_format.render_reply(c, tokenizer),
                                scope) for c in item.choices]
    flat = [_reduce(t, c, method) for t, c in score_encoded(model, tokenizer, encoded,
                                                             batch_size, progress)]
    per_item, pos = [], 0
    for i, item in enumerate(items):
        scores = flat[pos:pos + len(item.choices)]
        pos += len(item.choices)
        best = max(range(len(scores)), key=lambda k: (scores[k], -k))
        per_item.append({"index": i, "scores": scores, "predicted": best, "answer": item.answer,
                         "correct": best == item.answer})
    correct = [row["correct"] for row in per_item]
    low, high = bootstrap_ci(correct, seed)
    n = len(per_item)
    return {"accuracy": sum(correct) / n if n else 0.0, "ci_low": low, "ci_high": high, "n": n,
            "method": method, "scope": scope, "per_item": per_item}


def read_pairs_json(path: str | Path) -> list[dict]:
    """A TRL JSON file: a list of {prompt, chosen, rejected} records."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"Cannot read {path} as JSON: {exc}.",
                        "Give a JSON list of {prompt, chosen, rejected} objects.") from exc
    for i, rec in enumerate(records if isinstance(records, list) else [None]):
        if not isinstance(rec, dict) or not all(k in rec for k in ("prompt", "chosen", "rejected")):
            raise DataError(f"{path} record {i} lacks prompt/chosen/rejected.",
                            "Give a JSON list of {prompt, chosen, rejected} objects.")
    return records


_CHOICE_LINE = re.compile(r'^(\d+): "(.*)"$')


def hellaswag_choices(records: Sequence[dict]) -> list[ChoiceItem]:
    """HellaSwag-noise pairs as multiple choice: the last Context block, answer = chosen index."""
    items = []
    for i, rec in enumerate(records):
        block = rec["prompt"].rsplit("Context: ", 1)[-1]
        lines = block.strip().splitlines()
        if not lines or not lines[0].startswith('"'):
            raise DataError(f"Record {i} has no 'Context: \"...\"' block.",
                            "Use the HellaSwag-noise layout (Context, numbered choices).")
        context = lines[0].strip().strip('"')
        choices = [m.group(2) for m in map(_CHOICE_LINE.match, lines[1:]) if m]
        try:
            answer = int(str(rec["chosen"]).strip())
        except ValueError as exc:
            raise DataError(f"Record {i}: chosen '{rec['chosen']}' is not a choice number.",
                            "chosen must be the index of the right choice, e.g. ' 2'.") from exc
        items.append(ChoiceItem(context, choices, answer))
    return items


# ---------------------------------------------------------------------------------------
# Generation and judges
# ---------------------------------------------------------------------------------------
@dataclass
class SamplingSettings:
    """Sampling settings shared by both models of a win-rate comparison."""

    max_new_tokens: int = 48
    do_sample: bool = True
    temperature: float = 0.7
    top_p: float = 0.95


def generate_replies(loaded, prompts: Sequence[str], settings: SamplingSettings | None = None,
                     seed: int = 0, batch_size: int = 8) -> list[str]:
    """Replies to prompts, left-padded batches, seeded per batch so runs are reproducible."""
    import torch

    settings = settings or SamplingSettings()
    tok, model, fmt = loaded.tokenizer, loaded.model, loaded.prompt_format
    texts = [fmt.render_prompt(p, tok) for p in prompts]
    side, tok.padding_side = tok.padding_side, "left"
    replies: list[str] = []
    try:
        for i in range(0, len(texts), batch_size):
            chunk = texts[i:i + batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True,
                      add_special_tokens=not (tok.bos_token and chunk[0].startswith(tok.bos_token)))
            enc = enc.to(next(model.parameters()).device)
            torch.manual_seed(seed + i)
            kwargs = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                      "pad_token_id": _pad_id(tok)}
            if settings.do_sample:
                kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
            with torch.inference_mode():
                out = model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            replies += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    finally:
        tok.padding_side = side
    return replies


Verdict = Literal["a", "b", "tie"]


class LexiconJudge:
    """Offline judge: the reply with the more positive VADER sentiment wins (kind/positive)."""

    name = "lexicon"

    def __init__(self, margin: float = 0.05):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.margin = margin
        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, prompt: str, reply: str) -> float:
        return float(self.analyzer.polarity_scores(reply)["compound"])

    def judge(self, prompt: str, a: str, b: str) -> tuple[Verdict, dict]:
        sa, sb = self.score(prompt, a), self.score(prompt, b)
        verdict = "a" if sa - sb > self.margin else "b" if sb - sa > self.margin else "tie"
        return verdict, {"score_a": sa, "score_b": sb}


class RewardModelJudge:
    """A sequence-classification reward model: the reply with the higher reward wins."""

    name = "reward-model"

    def __init__(self, spec: str, margin: float = 0.0, workspace=None):
        from transformers import AutoModelForSequenceClassification

        from .models import load_tokenizer, resolve_path

        path = resolve_path(spec, workspace)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
        self.model.eval()
        self.tokenizer = load_tokenizer(path)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.margin = margin

    def score(self, prompt: str, reply: str) -> float:
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": prompt},
                                            {"role": "assistant", "content": reply}], tokenize=False)
        else:
            text = f"{prompt}\n{reply}"
        with torch.inference_mode():
            logits = self.model(**tok(text, return_tensors="pt", truncation=True)).logits
        return float(logits[0, 0])

    def judge(self, prompt: str, a: str, b: str) -> tuple[Verdict, dict]:
        sa, sb = self.score(prompt, a), self.score(prompt, b)
        verdict = "a" if sa - sb > self.margin else "b" if sb - sa > self.margin else "tie"
        return verdict, {"score_a": sa, "score_b": sb}


DEFAULT_JUDGE_PROMPT = (
    "Which reply to the message is kinder and more helpful?\n\nMessage: {prompt}\n\n"
    "Reply A: {a}\n\nReply B: {b}\n\nAnswer with one letter, A or B."
)


class LLMJudge:
    """A causal LM asked which reply is better; log-prob of "A" vs "B", asked in both orders."""

    name = "llm"

    def __init__(self, spec: str, template: str = DEFAULT_JUDGE_PROMPT, workspace=None):
        from .models import resolve_model

        if "{a}" not in template or "{b}" not in template:
            raise ConfigError("The judge prompt needs {a} and {b} placeholders.",
                              "Write where reply A and reply B go, e.g. 'Reply A: {a}'.")
        self.loaded = resolve_model(spec, workspace)
        self.template = template

    def preference(self, prompt: str, a: str, b: str) -> float:
        """log p("A") - log p("B") for the next token after the judge prompt."""
        import torch

        tok, fmt = self.loaded.tokenizer, self.loaded.prompt_format
        text = fmt.render_prompt(self.template.format(prompt=prompt, a=a, b=b), tok)
        if fmt.kind == "plain":
            text += fmt.separator
        ids = torch.tensor([_tokenize(tok, text)])
        with torch.inference_mode():
            logp = self.loaded.model(input_ids=ids).logits[0, -1].float().log_softmax(-1)
        first = [tok(x, add_special_tokens=False)["input_ids"][0] for x in ("A", "B")]
        return float(logp[first[0]] - logp[first[1]])

    def judge(self, prompt: str, a: str, b: str) -> tuple[Verdict, dict]:
        forward, swapped = self.preference(prompt, a, b), self.preference(prompt, b, a)
        verdict = "a" if forward > 0 and swapped < 0 else \
            "b" if forward < 0 and swapped > 0 else "tie"
        return verdict, {"a_first": forward, "b_first": swapped}


def make_judge(kind: str = "lexicon", spec: str | None = None, template: str | None = None):
    """A judge by name: lexicon (offline default), reward-model SPEC, llm SPEC."""
    if kind == "lexicon":
        return LexiconJudge()
    if not spec:
        raise ConfigError(f"The {kind} judge needs a model spec.", "Pass --judge-model SPEC.")
    if kind == "reward-model":
        return RewardModelJudge(spec)
    if kind == "llm":
        return LLMJudge(spec, template or DEFAULT_JUDGE_PROMPT)
    raise ConfigError(f"Unknown judge '{kind}'.", "Use lexicon, reward-model or llm.")


def win_rate(tuned, baseline, prompts: Sequence[str], judge,
             settings: SamplingSettings | None = None, seed: int = 0) -> dict:
    """Both models answer the same prompts (same settings and seed); the judge decides."""
    replies_a = generate_replies(tuned, prompts, settings, seed)
    replies_b = generate_replies(baseline, prompts, settings, seed)
    rows = []
    for prompt, a, b in zip(prompts, replies_a, replies_b, strict=False):
        verdict, detail = judge.judge(prompt, a, b)
        rows.append({"prompt": prompt, "tuned": a, "baseline": b, "verdict": verdict, **detail})
    n = len(rows)
    wins = sum(r["verdict"] == "a" for r in rows)
    ties = sum(r["verdict"] == "tie" for r in rows)
    low, high = bootstrap_ci([1.0 if r["verdict"] == "a" else 0.5 if r["verdict"] == "tie"
                              else 0.0 for r in rows], seed)
    return {"wins": wins, "ties": ties, "losses": n - wins - ties, "n": n,
            "win_rate": (wins + ties / 2) / n if n else 0.0, "ci_low": low, "ci_high": high,
            "judge": judge.name, "settings": asdict(settings or SamplingSettings()),
            "seed": seed, "rows": rows}


# ---------------------------------------------------------------------------------------
# Persistence: evals + eval_results, comparison and flips
# ---------------------------------------------------------------------------------------
def _save_eval(store: Store, model_spec: str, dataset_id: int | None, split: str, method: str,
               metrics: dict, results: Iterable[tuple], job_id: str | None = None) -> int:
    run_id = model_spec[4:] if model_spec.startswith("run:") else None
    with store.write() as conn:
        cur = conn.execute(
            "INSERT INTO evals(job_id, model_spec, run_id, dataset_id, split, method, "
            "metrics_json, at) VALUES(?,?,?,?,?,?,?,?)",
            (job_id, model_spec, run_id, dataset_id, split, method, dumps(metrics), now()))
        eval_id = cur.lastrowid
        conn.executemany(
            "INSERT INTO eval_results(eval_id, pair_id, item, chosen_score, rejected_score, "
            "correct, detail_json) VALUES(?,?,?,?,?,?,?)",
            ((eval_id, *row) for row in results))
    return eval_id


def run_beta(store: Store, run_id: str, default: float = 0.1) -> float:
    """The DPO beta a run trained with (its config), else `default`."""
    raw = store.scalar("SELECT config_json FROM runs WHERE id=?", (run_id,))
    config = json.loads(raw) if raw else {}
    for holder in (config, config.get("dpo", {}), config.get("training", {})):
        if isinstance(holder, dict) and holder.get("beta") is not None:
            return float(holder["beta"])
    return default


def _reference_for(loaded, workspace=None):
    """None for adapters (disable the adapter); the base model for full-weight runs."""
    from .models import resolve_model

    if loaded.is_adapter:
        return None
    if not loaded.base_spec:
        raise ConfigError(f"implicit-reward needs a fine-tuned run; '{loaded.spec}' has no "
                          "reference model.", "Use --model run:<id>, or mean-logp/sum-logp.")
    return resolve_model(loaded.base_spec, workspace).model


def run_evaluation(store: Store, model_spec: str, dataset: str | int, split: str | None = "eval",
                   methods: Sequence[str] = ("mean-logp",), scope: Scope = "reply",
                   limit: int | None = None, batch_size: int = 16, beta: float | None = None,
                   seed: int = 0, loaded=None, job_id: str | None = None, workspace=None,
                   progress: Progress = _noop) -> list[dict]:
    """Evaluate a model on a dataset split with each method; store and return the summaries."""
    from .data.datasets import get_dataset, iter_pairs
    from .models import resolve_model

    for method in methods:
        _check(method, scope)
    ds = get_dataset(store, dataset)
    pairs = list(iter_pairs(store, ds.id, split or None))[:limit] if limit \
        else list(iter_pairs(store, ds.id, split or None))
    if not pairs:
        raise DataError(f"Dataset '{ds.name}' has no pairs in split '{split}'.",
                        "Pick another split (e.g. train), or split the dataset first.")
    progress(0.0, f"Loading {model_spec} ...")
    loaded = loaded or resolve_model(model_spec, workspace)
    fmt = PromptFormat.from_dict(ds.prompt_format) if ds.prompt_format else loaded.prompt_format
    summaries = []
    for k, method in enumerate(methods):
        step = lambda f, m, k=k, name=method: progress(  # noqa: E731
            (k + f) / len(methods), f"{name}: {m}")
        extra = {}
        if method == "implicit-reward":
            b = beta if beta is not None else (
                run_beta(store, model_spec[4:]) if model_spec.startswith("run:") else 0.1)
            result = pair_accuracy(loaded.model, loaded.tokenizer, fmt, pairs, method, "reply",
                                   batch_size, b, _reference_for(loaded, workspace), seed,
                                   progress=step)
            extra["beta"] = b
        else:
            result = pair_accuracy(loaded.model, loaded.tokenizer, fmt, pairs, method, scope,
                                   batch_size, seed=seed, progress=step)
        metrics = {k2: result[k2] for k2 in ("accuracy", "ci_low", "ci_high", "mean_margin", "n",
                                             "scope")} | extra | {"dataset": ds.name}
        rows = ((p.id, "", r["chosen_score"], r["rejected_score"], int(r["correct"]),
                 dumps({"margin": r["margin"]}))
                for p, r in zip(pairs, result["per_pair"], strict=True))
        eval_id = _save_eval(store, model_spec, ds.id, split or "", method, metrics, rows, job_id)
        summaries.append({"eval_id": eval_id, "model": model_spec, "method": method,
                          "split": split or "", **metrics})
    progress(1.0, "Evaluation finished.")
    return summaries


def run_suite_evaluation(store: Store, model_spec: str, folder: str | Path,
                         method: Method = "mean-logp", limit: int | None = None,
                         batch_size: int = 16, seed: int = 0, loaded=None,
                         job_id: str | None = None, workspace=None,
                         progress: Progress = _noop) -> dict:
    """Evaluate a BLiMP-layout folder; store one eval (per-file accuracies in its metrics)."""
    from .models import resolve_model

    loaded = loaded or resolve_model(model_spec, workspace)
    result = suite_accuracy(loaded.model, loaded.tokenizer, folder, method, batch_size, limit,
                            seed, progress)
    metrics = {k: result[k] for k in ("accuracy", "ci_low", "ci_high", "mean_margin", "n",
                                      "scope", "files")} | {"suite": str(folder)}
    rows = ((None, r["item"], r["chosen_score"], r["rejected_score"], int(r["correct"]),
             dumps({"margin": r["margin"]})) for r in result["per_pair"])
    eval_id = _save_eval(store, model_spec, None, Path(folder).name, f"suite:{method}", metrics,
                         rows, job_id)
    return {"eval_id": eval_id, "model": model_spec, "method": f"suite:{method}", **metrics}


def run_file_evaluation(store: Store, model_spec: str, path: str | Path,
                        as_choices: bool = False, method: Method = "mean-logp",
                        limit: int | None = None, batch_size: int = 16, seed: int = 0,
                        loaded=None, job_id: str | None = None, workspace=None,
                        progress: Progress = _noop) -> dict:
    """Evaluate a TRL JSON file (e.g. HellaSwag noise) as pairs or as multiple choice; store it."""
    from .models import resolve_model

    _check(method, "reply")
    if method == "implicit-reward":
        raise ConfigError("File evaluation takes mean-logp or sum-logp.",
                          "Import the file as a dataset to use implicit-reward.")
    records = read_pairs_json(path)[:limit] if limit else read_pairs_json(path)
    loaded = loaded or resolve_model(model_spec, workspace)
    model, tok = loaded.model, loaded.tokenizer
    if as_choices:
        items = hellaswag_choices(records)
        result = multiple_choice_accuracy(model, tok, PromptFormat(), items, method, "reply",
                                          batch_size, seed, progress)
        rows = ((None, str(r["index"]), r["scores"][r["answer"]],
                 max((v for k, v in enumerate(r["scores"]) if k != r["answer"]), default=None),
                 int(r["correct"]), dumps(r)) for r in result["per_item"])
        result["mean_margin"] = 0.0
    else:
        result = pair_accuracy(model, tok, CONCAT_FORMAT, records, method, "reply", batch_size,
                               seed=seed, progress=progress)
        rows = ((None, str(r["index"]), r["chosen_score"], r["rejected_score"],
                 int(r["correct"]), dumps({"margin": r["margin"]})) for r in result["per_pair"])
    kind = "choices" if as_choices else "pairs"
    metrics = {k: result[k] for k in ("accuracy", "ci_low", "ci_high", "mean_margin", "n",
                                      "scope")} | {"suite": str(path)}
    eval_id = _save_eval(store, model_spec, None, Path(path).name, f"{kind}:{method}", metrics,
                         rows, job_id)
    return {"eval_id": eval_id, "model": model_spec, "method": f"{kind}:{method}", **metrics}


def save_win_rate(store: Store, tuned_spec: str, baseline_spec: str, result: dict,
                  job_id: str | None = None) -> int:
    """Store a win-rate result: every generation and verdict as an eval_results row."""
    metrics = {k: result[k] for k in ("wins", "ties", "losses", "n", "win_rate", "ci_low",
                                      "ci_high", "judge", "settings", "seed")}
    metrics |= {"baseline": baseline_spec, "accuracy": result["win_rate"]}
    rows = ((None, r["prompt"], r.get("score_a"), r.get("score_b"), int(r["verdict"] == "a"),
             dumps(r)) for r in result["rows"])
    return _save_eval(store, tuned_spec, None, "", f"win-rate:{result['judge']}", metrics, rows,
                      job_id)


def list_evals(store: Store, dataset: str | int | None = None) -> list[dict]:
    """Stored evaluations, newest first, with their metrics."""
    sql = "SELECT e.*, d.name AS dataset FROM evals e LEFT JOIN datasets d ON d.id=e.dataset_id"
    params: tuple = ()
    if dataset is not None:
        from .data.datasets import get_dataset

        sql += " WHERE e.dataset_id=?"
        params = (get_dataset(store, dataset).id,)
    rows = store.query(sql + " ORDER BY e.id DESC", params)
    out = []
    for r in rows:
        metrics = json.loads(r["metrics_json"] or "{}")
        out.append({"id": r["id"], "model": r["model_spec"], "run_id": r["run_id"],
                    "dataset": r["dataset"], "split": r["split"], "method": r["method"],
                    "at": r["at"], **metrics, "benchmark": _benchmark(metrics, r["split"])})
    return out


def _get_eval(store: Store, eval_id: int):
    row = store.query_one("SELECT * FROM evals WHERE id=?", (eval_id,))
    if row is None:
        raise NotFoundError(f"No evaluation #{eval_id}.",
                            "List them with `python -m dpo_core evals list`.")
    return row


def _benchmark(metrics: dict, split: str) -> str:
    """What an evaluation scored, as tables name it: dataset/split, a suite or a file."""
    if metrics.get("dataset"):
        return f"{metrics['dataset']}/{split or 'all'}"
    return metrics.get("suite") or split


def eval_details(store: Store, eval_id: int) -> dict:
    """One stored evaluation: what was scored, its metrics and every per-pair result."""
    row = _get_eval(store, eval_id)
    bench = compare_evals(store, [eval_id])[0]["benchmark"]
    results = [{"pair_id": r["pair_id"], "item": r["item"], "chosen_score": r["chosen_score"],
                "rejected_score": r["rejected_score"],
                "correct": None if r["correct"] is None else bool(r["correct"]),
                **json.loads(r["detail_json"] or "{}")}
               for r in store.query("SELECT * FROM eval_results WHERE eval_id=? ORDER BY rowid",
                                    (eval_id,))]
    return {"id": eval_id, "model": row["model_spec"], "run_id": row["run_id"],
            "benchmark": bench, "split": row["split"], "method": row["method"], "at": row["at"],
            "metrics": json.loads(row["metrics_json"] or "{}"), "results": results}


def compare_evals(store: Store, eval_ids: Sequence[int]) -> list[dict]:
    """Model x benchmark rows (accuracy and interval) for a comparison table or chart."""
    out = []
    for eval_id in eval_ids:
        row = _get_eval(store, eval_id)
        metrics = json.loads(row["metrics_json"] or "{}")
        out.append({"eval_id": eval_id, "model": row["model_spec"],
                    "benchmark": _benchmark(metrics, row["split"]),
                    "method": row["method"], "accuracy": metrics.get("accuracy"),
                    "ci_low": metrics.get("ci_low"), "ci_high": metrics.get("ci_high"),
                    "n": metrics.get("n")})
    return out


def _results(store: Store, eval_id: int) -> dict:
    rows = store.query("SELECT * FROM eval_results WHERE eval_id=?", (eval_id,))
    return {(r["pair_id"], r["item"]): r for r in rows}


def flip_analysis(store: Store, eval_a: int, eval_b: int) -> dict:
    """Pairs A (baseline) got wrong and B (tuned) right (`fixed`), and the reverse (`broken`)."""
    _get_eval(store, eval_a), _get_eval(store, eval_b)
    ra, rb = _results(store, eval_a), _results(store, eval_b)
    ids = [k[0] for k in ra if k in rb and k[0] is not None]
    texts = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for p in store.query(f"SELECT id, prompt, chosen, rejected FROM pairs WHERE id IN "
                             f"({','.join('?' * len(chunk))})", tuple(chunk)):
            texts[p["id"]] = dict(p)
    fixed, broken = [], []
    for key, a in ra.items():
        b = rb.get(key)
        if b is None or a["correct"] == b["correct"]:
            continue
        row = {"pair_id": key[0], "item": key[1], **texts.get(key[0], {}),
               "baseline_chosen": a["chosen_score"], "baseline_rejected": a["rejected_score"],
               "tuned_chosen": b["chosen_score"], "tuned_rejected": b["rejected_score"]}
        row.pop("id", None)
        (fixed if b["correct"] else broken).append(row)
    same = sum(1 for k in ra if k in rb)
    return {"fixed": fixed, "broken": broken, "compared": same}
