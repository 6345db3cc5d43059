"""Read-only verbs answer at the speed of `--help`: `runs list`, `runs show`, `sweeps list`,
`evals list` on a workspace with 200 runs (one with 5,000 logged steps), each timed against
`python -m dpo_core --help` (the interpreter and the CLI's own imports, nothing else) in the
same run, interleaved, median of the repeats. Target: ratio <= 1.5 (no torch, no model).

    python bench/bench_cli.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dpo_core.jobs.rows import insert_job  # noqa: E402
from dpo_core.store import Store, now  # noqa: E402

BASELINE = ["--help"]
VERBS = (["runs", "list"], ["runs", "show", "bench-run-0000"], ["sweeps", "list"],
         ["evals", "list"])
TARGET = 1.5


def fill(store: Store) -> None:
    with store.write() as conn:
        for i in range(200):
            insert_job(conn, f"bench-run-{i:04d}", "train", f"run {i}", {"beta": 0.1}, "",
                       status="completed", step=5000, total_steps=5000)
        conn.executemany("INSERT INTO metrics(run_id, step, split, key, value, at) "
                         "VALUES(?,?,?,?,?,?)",
                         [("bench-run-0000", s, "train", k, 0.5, now()) for s in range(5000)
                          for k in ("loss", "rewards/margins", "grad_norm")])


def seconds(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dpo_core", *args], check=True, env=env, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DPO_LAB_HOME": home, "PYTHONPATH": str(REPO)}
        seconds(["runs", "list"], env)  # creates and seeds the workspace
        fill(Store(Path(home) / "lab.db"))
        times: dict[str, list[float]] = {" ".join(v): [] for v in [BASELINE, *VERBS]}
        for _ in range(args.repeats):  # interleaved: load on the machine hits every verb alike
            for verb in [BASELINE, *VERBS]:
                times[" ".join(verb)].append(seconds(verb, env))
    base = statistics.median(times[" ".join(BASELINE)])
    print(f"baseline `--help`: median {base:.3f} s over {args.repeats} repeats")
    worst = 0.0
    for verb in VERBS:
        med = statistics.median(times[" ".join(verb)])
        worst = max(worst, med / base)
        print(f"{' '.join(verb):32} median {med:.3f} s  ratio {med / base:.2f}")
    print(f"worst ratio {worst:.2f} (target <= {TARGET})")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
