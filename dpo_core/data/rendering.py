"""The exact text a pair becomes for a model: the prompt format (the run's, else the dataset's,
else the model's), the chat template or the plain format's tags, the prompt cut to
max_prompt_length and the tokens of each reply that max_length cuts away.

Training freezes these texts (training/freeze.py); the Data page and `data show --rendered`
preview them, and the truncation check counts with them: one rendering everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..formats import PromptFormat
from ..models import load_tokenizer, read_prompt_format, resolve_path
from ..store import Store
from .datasets import get_dataset, iter_pairs
from .edits import check_dataset, get_pair


@dataclass
class RenderedPair:
    """A pair's model text, with its lengths in tokens and what the limits cut."""

    pair_id: int | None
    prompt: str
    chosen: str
    rejected: str
    prompt_tokens: int = 0
    chosen_tokens: int = 0
    rejected_tokens: int = 0
    prompt_cut: int = 0  # tokens max_prompt_length cut from the prompt's start
    chosen_cut: int = 0  # tokens of the reply past max_length (TRL keeps the start)
    rejected_cut: int = 0
    marked: dict = field(default_factory=dict)  # {field: text with the cut marked}, if cut

    def as_dict(self) -> dict:
        return asdict(self)

    def record(self) -> dict:
        """The row a run's pairs file holds (TRL's standard text shape)."""
        return {"pair_id": self.pair_id, "prompt": self.prompt, "chosen": self.chosen,
                "rejected": self.rejected}


def format_for(override: dict | None, dataset_format: dict, model_path: str,
               tok) -> PromptFormat:
    """The format pairs render with: the given one, else the dataset's, else the model's."""
    if override is not None:
        return PromptFormat.from_dict(override)
    if dataset_format:
        return PromptFormat.from_dict(dataset_format)
    return read_prompt_format(model_path, tok)


def count_tokens(tok, text: str) -> int:
    """Tokens of a text as training counts them (no special tokens added)."""
    return len(tok(text, add_special_tokens=False)["input_ids"])


def render_pair(pair, fmt: PromptFormat, tok, max_length: int = 0,
                max_prompt_length: int = 0, measure: bool = True) -> RenderedPair:
    """One pair (a Pair or a {prompt, chosen, rejected} dict) as model text. The prompt keeps
    its last `max_prompt_length` tokens (the turn being answered matters most); with `measure`
    the replies are counted too and the tokens past `max_length` marked."""
    get = pair.get if isinstance(pair, dict) else lambda k: getattr(pair, k)
    prompt = fmt.render_prompt(get("prompt"), tok)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    cut = 0
    if max_prompt_length and len(ids) > max_prompt_length:
        cut = len(ids) - max_prompt_length
        prompt, ids = tok.decode(ids[cut:]), ids[cut:]
    out = RenderedPair(get("id"), prompt, fmt.render_reply(get("chosen"), tok),
                       fmt.render_reply(get("rejected"), tok), len(ids), prompt_cut=cut)
    if cut:
        out.marked["prompt"] = f"[… {cut} tokens cut by max_prompt_length] {prompt}"
    if measure:
        for side in ("chosen", "rejected"):
            text = getattr(out, side)
            reply_ids = tok(text, add_special_tokens=False)["input_ids"]
            n = len(reply_ids)
            setattr(out, f"{side}_tokens", n)
            lost = min(n, max(0, len(ids) + n - max_length)) if max_length else 0
            setattr(out, f"{side}_cut", lost)
            if lost:
                out.marked[side] = (tok.decode(reply_ids[:n - lost]) + CUT_MARK
                                    + tok.decode(reply_ids[n - lost:]))
    return out


CUT_MARK = " ✂[max_length] "  # where training cuts a reply off


def preview_pairs(store: Store, dataset: str | int, model: str, *,
                  pair_ids: list[int] | None = None, limit: int = 3, split: str | None = None,
                  max_length: int = 512, max_prompt_length: int = 256,
                  prompt_format: dict | None = None, workspace=None, tokenizer=None
                  ) -> tuple[PromptFormat, list[RenderedPair]]:
    """The format and the rendered text of some pairs of a dataset for `model` (a spec: the
    default, builtin:tiny, run:<id>, a folder or a hub id), as a run would freeze them.
    `tokenizer`: the model's, if the caller has it loaded already."""
    ds = get_dataset(store, dataset)
    path = resolve_path(model, workspace)
    tok = tokenizer if tokenizer is not None else load_tokenizer(path)
    fmt = format_for(prompt_format, ds.prompt_format, path, tok)
    if pair_ids:
        pairs = [get_pair(store, i) for i in pair_ids]
        for pair in pairs:
            check_dataset(pair, ds.id)
    else:
        pairs = []
        for p in iter_pairs(store, ds.id, split, batch=limit):
            pairs.append(p)
            if len(pairs) >= limit:
                break
    return fmt, [render_pair(p, fmt, tok, max_length, max_prompt_length) for p in pairs]
