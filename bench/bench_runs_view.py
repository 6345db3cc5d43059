"""One refresh of the Runs page's run view: a run with 50 logged steps vs one with 5,000.

The view keeps the rows it has seen in session state and fetches only newer ones, and charts draw
at most a fixed number of points, so a refresh should cost about the same (target ratio <= 1.5).

    python bench/bench_runs_view.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dpo_core.store import Store, forget_stores, now  # noqa: E402

KEYS = ["loss", "grad_norm", "learning_rate", "rewards/chosen", "rewards/rejected",
        "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected",
        "logits/chosen", "logits/rejected", "epoch"]
SIZES = (50, 5000)
TARGET = 1.5


def add_steps(store: Store, run_id: str, steps: range) -> None:
    rows = [(run_id, s, "train", k, math.sin(s / 100) + 0.5, now()) for s in steps for k in KEYS]
    with store.write() as conn:
        conn.executemany("INSERT INTO metrics(run_id, step, split, key, value, at) "
                         "VALUES(?,?,?,?,?,?)", rows)


def add_run(store: Store, run_id: str, steps: int) -> None:
    with store.write() as conn:
        conn.execute("INSERT INTO runs(id, name, status, created, started, step, total_steps) "
                     "VALUES(?,?,?,?,?,?,?)", (run_id, run_id, "completed", now(), now(), steps,
                                               steps))
    add_steps(store, run_id, range(1, steps + 1))


def refresh_times(store: Store, run_id: str, steps: int, repeats: int) -> list[float]:
    """Open the run view once, then time reruns that each find one new logged step."""
    from streamlit.logger import set_log_level
    from streamlit.testing.v1 import AppTest

    set_log_level("error")  # AppTest's bare-mode warnings are noise here
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.session_state["run_id"] = run_id
    at.run()
    at.switch_page("pages/runs.py").run()
    times = []
    for i in range(repeats):
        add_steps(store, run_id, range(steps + i + 1, steps + i + 2))
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    if at.exception:
        raise SystemExit(f"the Runs page raised: {[e.value for e in at.exception]}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed refreshes per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-runs-view-") as home:
        os.environ["DPO_LAB_HOME"] = home
        os.environ["DPO_LAB_NO_PREPARE"] = "1"
        forget_stores()
        from dpo_core.workspace import get_workspace

        store = Store(get_workspace(home).db_path)
        medians = {}
        for steps in SIZES:
            add_run(store, f"r{steps}", steps)
            times = refresh_times(store, f"r{steps}", steps, args.repeats)
            medians[steps] = statistics.median(times)
            print(f"{steps:>5} logged steps ({steps * len(KEYS):>6} metric rows): refresh median "
                  f"{medians[steps] * 1000:7.1f} ms (min {min(times) * 1000:.1f}, "
                  f"max {max(times) * 1000:.1f}, n={len(times)})")
        store.close()
        forget_stores()
    ratio = medians[SIZES[1]] / medians[SIZES[0]]
    verdict = "ok" if ratio <= TARGET else "OVER TARGET"
    print(f"ratio {SIZES[1]}/{SIZES[0]}: {ratio:.2f} (target <= {TARGET}) {verdict}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
