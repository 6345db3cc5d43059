"""`python -m dpo_core compare`: two models answer one prompt side by side, with timings."""

from __future__ import annotations

import argparse

from ..chat.cache import ModelCache
from ..chat.sampling import SamplingSettings
from ..chat.side_by_side import format_warning, side_by_side
from ..errors import ConfigError
from .output import print_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="answer one prompt with two models side by side",
        description="Both models answer the same prompt with the same sampling settings and seed. "
                    "A run:<id> as --right with no --left is compared with its base model.")
    p.add_argument("--left", help="baseline model spec (default: the right run's base)")
    p.add_argument("--right", required=True, help="model spec, e.g. run:<id> or a folder")
    p.add_argument("--prompt", required=True, help="the user message")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--sequential", action="store_true",
                   help="never batch the two sides (for timing comparisons)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    settings = SamplingSettings(seed=args.seed, max_new_tokens=args.max_new_tokens,
                                temperature=args.temperature, greedy=args.greedy)
    cache = ModelCache()
    left = args.left or _base_of(cache, args.right)
    result = side_by_side(cache, left, args.right, [], [], args.prompt, settings,
                          batch=not args.sequential)
    warning = format_warning(cache.get(args.right).prompt_format, result.prompt_format)
    if args.json:
        print_json({"left_spec": left, "right_spec": args.right, "prompt": args.prompt,
                    "settings": settings.to_dict(), "warning": warning, **result.to_dict()})
        return 0
    for name, spec, reply in (("left", left, result.left), ("right", args.right, result.right)):
        ttft = "-" if reply.ttft_s is None else f"{reply.ttft_s:.2f}s"
        print(f"== {name}: {spec}  ({reply.new_tokens} tokens, first token {ttft}, "
              f"{reply.tokens_per_s:.1f} tokens/s)")
        print(reply.text)
        print()
    mode = "one mixed-adapter batch" if result.batched else "one after the other"
    print(f"both answers in {result.seconds:.2f}s ({mode}); format: {result.prompt_format.label}")
    if warning:
        print(f"note: {warning}")
    return 0


def _base_of(cache, right: str) -> str:
    """The base model of a run, the default left side."""
    side = cache.get(right)
    if not side.base_spec:
        raise ConfigError(f"--right {right} is not a fine-tuned run, so it has no base to compare "
                          "with.", "Pass --left SPEC as well.")
    return side.base_spec
