"""Data checks and import at scale, measured in one run:

1. One edit with its checks brought up to date: swap a pair, then read the check counts and
   the dataset summary the Data page shows, on a 1k and a 100k dataset; repeats interleaved,
   medians and their ratio (target <= 1.5).
2. The same edit as a click on the Data page (Swap in the Browse tab, through app.py in
   Streamlit's AppTest, the page's whole rerun included).
3. The first (full) check of each dataset, for scale.
4. Import peak memory: a generated JSON Lines file imported in a fresh process; the peak RSS
   growth and Python's peak allocation against the file size.

    python bench/bench_data_checks.py [--repeats 21] [--import-mb 200] [--no-page]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpo_core.data import edits  # noqa: E402
from dpo_core.data.browse import page as browse_page  # noqa: E402
from dpo_core.data.checks import check_counts  # noqa: E402
from dpo_core.data.importer import import_pairs  # noqa: E402
from dpo_core.data.stats import dataset_summary  # noqa: E402
from dpo_core.store import Store  # noqa: E402
from dpo_core.workspace import get_workspace  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "app.py"

CSV = Path(__file__).resolve().parents[2] / "shared/data/childes-dpo/len_pairs_no_overlap_1.csv"


def records(n: int) -> list[dict]:
    """CHILDES-shaped pairs: the real minimal pairs when present, else generated ones."""
    base = []
    if CSV.exists():
        import csv

        with CSV.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                good, bad = row["pospair"].split("\t"), row["negpair"].split("\t")
                base.append((good[0], good[1], bad[1].strip()))
    else:
        base = [(f"*MOT: what is thing {i} ?", f"*CHI: it is a thing {i} .", f"*CHI: no {i % 7} .")
                for i in range(25_000)]
    return [{"prompt": p, "chosen": f"{c} v{i // len(base)}", "rejected": r}
            for i, (p, c, r) in ((i, base[i % len(base)]) for i in range(n))]


def build(folder: Path, name: str, n: int) -> tuple[Store, float]:
    store = Store(get_workspace(folder / name).db_path)
    import_pairs(store, records(n), dataset=name)
    started = time.perf_counter()
    check_counts(store, name)  # the first, full check
    return store, time.perf_counter() - started


def edit_once(store: Store, name: str, pair_id: int) -> float:
    """Swap one pair and bring its checks up to date, as the Data page does after a click."""
    started = time.perf_counter()
    pair = edits.get_pair(store, pair_id)
    edits.swap_pair(store, pair_id, pair.version)
    check_counts(store, name)
    dataset_summary(store, pair.dataset_id, lengths=False)
    return time.perf_counter() - started


def _ratio(times: dict[str, list[float]]) -> str:
    small, big = (statistics.median(times[k]) * 1000 for k in ("small", "big"))
    return f"1k {small:.2f} ms, 100k {big:.2f} ms, ratio {big / small:.2f} (target <= 1.5)"


def page_bench(folder: Path, repeats: int) -> None:
    """Swap clicked on the Data page of each dataset, through app.py (AppTest)."""
    from streamlit.testing.v1 import AppTest

    os.environ["DPO_LAB_NO_PREPARE"] = "1"
    apps = {}
    for name in ("small", "big"):
        os.environ["DPO_LAB_HOME"] = str(folder / name)
        at = AppTest.from_file(str(APP), default_timeout=600)
        at.run()
        at.session_state["dataset"] = name
        at.switch_page("pages/data.py").run()
        apps[name] = at
    times: dict[str, list[float]] = {"small": [], "big": []}
    for _ in range(repeats):
        for name, at in apps.items():
            os.environ["DPO_LAB_HOME"] = str(folder / name)
            started = time.perf_counter()
            at.button(key="data_swap").click().run()
            times[name].append(time.perf_counter() - started)
            assert not at.exception, [e.value for e in at.exception]
    print(f"Data page swap click, whole rerun (median of {repeats}): {_ratio(times)}")


def edits_bench(repeats: int, page: bool) -> None:
    folder = Path(tempfile.mkdtemp())
    small, first_small = build(folder, "small", 1_000)
    big, first_big = build(folder, "big", 100_000)
    print(f"first full check: 1k {first_small * 1000:.0f} ms, 100k {first_big:.1f} s")
    ids = {name: [p.id for p in browse_page(store, name, limit=200).pairs]
           for name, store in (("small", small), ("big", big))}
    times: dict[str, list[float]] = {"small": [], "big": []}
    for i in range(repeats):  # interleaved: both sizes see the same machine load
        for name, store in (("small", small), ("big", big)):
            times[name].append(edit_once(store, name, ids[name][(i * 7) % 200]))
    print(f"edit + checks + summary (median of {repeats}): {_ratio(times)}")
    if page:
        page_bench(folder, repeats)


CHILD = """
import json, sys, time, tracemalloc
from dpo_core.data.importer import import_pairs
from dpo_core.store import Store

def high_water() -> int:  # this process's peak RSS (VmHWM: not inherited, unlike ru_maxrss)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

store = Store(sys.argv[2])
import_pairs(store, [{"prompt": "warm", "chosen": "a", "rejected": "b"}], dataset="warm")
base = high_water()
tracemalloc.start()
started = time.perf_counter()
result = import_pairs(store, sys.argv[1], dataset="big")
seconds = time.perf_counter() - started
python_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
peak = high_water()
print(json.dumps({"rows": result.count, "rss_before": base, "rss_peak": peak,
                  "python_peak": python_peak, "seconds": seconds}))
"""


def import_bench(megabytes: int) -> None:
    folder = Path(tempfile.mkdtemp())
    path = folder / "big.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        i = 0
        while fh.tell() < megabytes * 1_000_000:
            fh.write(json.dumps({"prompt": f"*MOT: what is that thing number {i} ?",
                                 "chosen": f"*CHI: a ball {i} .", "rejected": "*CHI: no .",
                                 "note": "x" * 120}) + "\n")
            i += 1
    size = path.stat().st_size
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(folder / "lab.db")],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    growth = got["rss_peak"] - got["rss_before"]
    print(f"import {size / 1e6:.0f} MB JSONL ({got['rows']:,} rows) in {got['seconds']:.1f} s: "
          f"process RSS {got['rss_before'] / 1e6:.0f} MB before, peak {got['rss_peak'] / 1e6:.0f} "
          f"MB (growth {growth / 1e6:.0f} MB = {growth / size:.2f}x the file); Python's peak "
          f"allocation during the import {got['python_peak'] / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--import-mb", type=int, default=200)
    parser.add_argument("--no-page", action="store_true", help="skip the Data page clicks")
    args = parser.parse_args()
    edits_bench(args.repeats, not args.no_page)
    import_bench(args.import_mb)


if __name__ == "__main__":
    main()
