"""Scoring texts with a model: log-probabilities of prompt + reply, pair scores, implicit rewards
and pair accuracy.

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

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

from ..errors import ConfigError
from ..formats import PromptFormat
from .statistics import summarize_scores

log = logging.getLogger(__name__)
Method = Literal["mean-logp", "sum-logp", "implicit-reward"]
Scope = Literal["reply", "full"]
METHODS = ("mean-logp", "sum-logp", "implicit-reward")
SCOPES = ("reply", "full")
Progress = Callable[[float, str], None]
# What a pair evaluation's number measures, stored with it (suites: suites.SUITE_PROTOCOLS)
PAIR_PROTOCOLS = {
    "reply-tokens": "reply tokens after the prompt (TRL's convention)",
    "whole-text": "every token of prompt + reply after the first",
    "implicit-reward": "beta x (policy - reference) log-probs of reply + EOS (TRL's rewards)",
}
Encoded = tuple[tuple[int, ...], int]  # token ids, index of the first scored token


def no_progress(fraction: float, message: str) -> None:
    pass


# ---------------------------------------------------------------------------------------
# Tokenizing and scoring
# ---------------------------------------------------------------------------------------
def tokenize(tokenizer, text: str) -> list[int]:
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
    full = tokenize(tokenizer, prompt_text + reply_text)
    if scope == "full" or not prompt_text:
        return tuple(full), 1
    start = _common_prefix(tokenize(tokenizer, prompt_text), full)
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
                  progress: Progress = no_progress) -> list[tuple[float, int]]:
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
                        progress: Progress = no_progress) -> list[tuple[float, int]]:
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


def pair_protocol(method: str, scope: str) -> str:
    """The PAIR_PROTOCOLS name of a pair evaluation with this method and scope."""
    if method == "implicit-reward":
        return "implicit-reward"
    return "whole-text" if scope == "full" else "reply-tokens"


def reduce_score(total: float, count: int, method: str) -> float:
    if method == "sum-logp":
        return total
    return total / count if count else 0.0


def _fields(pair) -> tuple[str, str, str]:
    if isinstance(pair, dict):
        return pair["prompt"], pair["chosen"], pair["rejected"]
    return pair.prompt, pair.chosen, pair.rejected


def check_method(method: str, scope: str) -> None:
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
                progress: Progress = no_progress, add_eos: bool = False,
                shared_prefix: bool = True) -> list[tuple[float, float]]:
    """(chosen_score, rejected_score) per pair with `mean-logp` or `sum-logp`.

    `shared_prefix` runs the prompt (and whatever else both replies start with) once per pair;
    off, each text runs whole (the scores agree to float rounding).
    """
    check_method(method, scope)
    if method == "implicit-reward":
        raise ConfigError("score_pairs takes mean-logp or sum-logp.",
                          "Use implicit_rewards() for implicit-reward.")
    items = encode_pairs(tokenizer, prompt_format, pairs, scope, add_eos)
    scored = (score_encoded_pairs if shared_prefix else score_encoded)(
        model, tokenizer, items, batch_size, progress)
    scores = [reduce_score(t, c, method) for t, c in scored]
    return list(zip(scores[0::2], scores[1::2], strict=False))


def implicit_rewards(model, tokenizer, prompt_format: PromptFormat, pairs: Sequence,
                     beta: float = 0.1, reference=None, batch_size: int = 16,
                     progress: Progress = no_progress) -> list[tuple[float, float]]:
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


def pair_accuracy(model, tokenizer, prompt_format: PromptFormat, pairs: Sequence,
                  method: Method = "mean-logp", scope: Scope = "reply", batch_size: int = 16,
                  beta: float = 0.1, reference=None, seed: int = 0, n_boot: int = 1000,
                  progress: Progress = no_progress) -> dict:
    """Pair accuracy with a bootstrap 95% interval, mean margin and per-pair results."""
    check_method(method, scope)
    if method == "implicit-reward":
        scores = implicit_rewards(model, tokenizer, prompt_format, pairs, beta, reference,
                                  batch_size, progress)
    else:
        scores = score_pairs(model, tokenizer, prompt_format, pairs, method, scope, batch_size,
                             progress)
    return {**summarize_scores(scores, seed, n_boot), "method": method,
            "scope": "reply" if method == "implicit-reward" else scope}
