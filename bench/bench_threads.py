"""Generation in the caller's thread against a background thread, at load 0 and with a CPU hog.

    python bench/bench_threads.py [--model SPEC] [--max-new-tokens 16] [--repeats 3] [--old]
                                  [--json]

`compare`, win-rate replies and the pair builders ask for answers from the caller's thread
(`generate`, `generate_batch`); the Chat page streams them from a background thread (`stream`).
Each measurement runs in a fresh process (libgomp reads its wait policy once, when torch loads
it): the model is loaded in the main thread, then one greedy answer is timed both ways,
interleaved, for `--repeats` rounds; medians and their ratio are printed for each load. The hog
is one other process spinning on a core. `--old` also measures the lab before
`dpo_core/chat/threads.py`: libgomp's default spin (GOMP_SPINCOUNT=300000) with the answer
generated in the caller's own thread, the slowdown the fix removes.

Uses the default model when it is prepared, else builtin:tiny (too small to show it). The
machine may be shared: "load 0" is without our hog; the load average is printed beside each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
PROMPT = "Give me three tips for improving my time management skills."
OLD_SPINCOUNT = "300000"  # libgomp's default when GOMP_SPINCOUNT is not set


def measure(spec: str | None, max_new_tokens: int, repeats: int, hog: bool,
            old: bool = False) -> dict:
    """In this process: median seconds of one answer in the caller's and a background thread."""
    sys.path.insert(0, str(HERE.parents[1]))
    from dpo_core.chat import generate as generation  # sets the wait policy before torch loads
    from dpo_core.chat.generate import generate, stream
    from dpo_core.chat.sampling import SamplingSettings
    from dpo_core.chat.threads import SPIN_ENV
    from dpo_core.models import DEFAULT_SPEC, TINY_SPEC, model_state, resolve_model

    spec = spec or (DEFAULT_SPEC if model_state(DEFAULT_SPEC)["ready"] else TINY_SPEC)
    loaded = resolve_model(spec)
    text = loaded.prompt_format.render_prompt(PROMPT, loaded.tokenizer)
    settings = SamplingSettings(greedy=True, max_new_tokens=max_new_tokens)

    if old:  # the lab before the fix: the answer generated in the caller's own thread
        generation.off_caller = lambda fn, *a, **kw: fn(*a, **kw)

    def caller() -> float:
        start = time.perf_counter()
        generate(loaded, text, settings)
        return time.perf_counter() - start

    def background() -> float:
        start = time.perf_counter()
        for _ in stream(loaded, text, settings):  # the Chat page's path
            pass
        return time.perf_counter() - start

    caller(), background()  # warm-up: both threads' pools exist, as in a long-lived process
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
    try:
        times: dict[str, list[float]] = {"caller": [], "background": []}
        for _ in range(repeats):
            times["caller"].append(caller())
            times["background"].append(background())
        load = os.getloadavg()[0]
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"model": spec, "spincount": os.environ.get(SPIN_ENV), "hog": hog,
            "load_average": round(load, 2),
            "caller_s": round(medians["caller"], 2), "background_s": round(medians["background"], 2),
            "ratio": round(medians["caller"] / medians["background"], 2),
            "all_s": {k: [round(x, 2) for x in v] for k, v in times.items()}}


def child(args, policy: str, hog: bool) -> dict:
    env = dict(os.environ)
    env.pop("GOMP_SPINCOUNT", None)
    if policy == "old":
        env["GOMP_SPINCOUNT"] = OLD_SPINCOUNT
    command = [sys.executable, str(HERE), "--child", "--max-new-tokens",
               str(args.max_new_tokens), "--repeats", str(args.repeats)]
    command += ["--model", args.model] if args.model else []
    command += ["--hog"] if hog else []
    command += ["--as-before"] if policy == "old" else []
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return {"policy": policy, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model spec (default: the default model if prepared)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old", action="store_true",
                        help="also measure libgomp's default spin (the lab before the fix)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hog", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--as-before", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.max_new_tokens, args.repeats, args.hog,
                                 args.as_before)))
        return 0
    rows = [child(args, policy, hog) for policy in (["lab", "old"] if args.old else ["lab"])
            for hog in (False, True)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"model {rows[0]['model']}, {args.max_new_tokens} greedy tokens, medians of "
          f"{args.repeats} interleaved repeats (caller / background = ratio)")
    for r in rows:
        load = "CPU hog  " if r["hog"] else "load 0   "
        print(f"  {r['policy']:>3} spin={r['spincount']:<7} {load} caller {r['caller_s']:6.2f} s"
              f"  background {r['background_s']:6.2f} s  ratio {r['ratio']:5.2f}"
              f"  (load average {r['load_average']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
