"""Data workbench speed: page fetch, search, save edit and one Data page rerun at 100k vs 1k pairs;
import vs pandas. `--no-rerun` skips the page rerun (Streamlit AppTest)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from dpo_core.data import browse, edits
from dpo_core.data.importer import import_pairs
from dpo_core.store import Store
from dpo_core.workspace import get_workspace

APP = Path(__file__).resolve().parents[1] / "app.py"

CSV = Path(__file__).resolve().parents[1].parent / "shared/data/childes-dpo/len_pairs_no_overlap_1.csv"


def _best(fn, n=20) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def _records(n: int) -> list[dict]:
    df = pd.read_csv(CSV)
    out = []
    for i in range(n):
        good, bad = df.pospair[i % len(df)].split("\t"), df.negpair[i % len(df)].split("\t")
        out.append({"prompt": good[0], "chosen": f"{good[1]} v{i // len(df)}",
                    "rejected": bad[1].strip()})
    return out


def _measure(store: Store, name: str) -> dict:
    mid = browse.page(store, name, limit=1).first_id + 500
    pair = edits.get_pair(store, mid)

    def save():
        nonlocal pair
        pair = edits.update_pair(store, pair.id, {"note": str(time.time())}, pair.version)

    middle = (len(pair.chosen), pair.id)  # a length-sorted page from the middle of the set
    return {"page": _best(lambda: browse.page(store, name, after=mid, limit=50)),
            "by_len": _best(lambda: browse.page(store, name, sort="-chosen_len",
                                               after=middle, limit=50)),
            "search": _best(lambda: browse.page(store, name, search="the", limit=50)),
            "save": _best(save)}


def _reruns(home: Path) -> dict:
    """Best time of one Data page rerun (caches warm) per dataset, through app.py in AppTest."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(DPO_LAB_HOME=str(home), DPO_LAB_NO_PREPARE="1")
    at = AppTest.from_file(str(APP), default_timeout=600)
    at.run()
    out = {}
    for name in ("small", "big", "small"):  # small twice: the first pass also warms imports
        at.session_state["dataset"] = name
        at.switch_page("pages/data.py").run()  # fills the stats/check caches once
        assert not at.exception, [e.value for e in at.exception]
        out[name] = _best(at.run, n=5)
    return out


def main() -> None:
    if not CSV.exists():
        sys.exit(f"{CSV} not present")
    home = Path(tempfile.mkdtemp()) / "lab"
    store = Store(get_workspace(home).db_path)
    import_pairs(store, _records(1_000), dataset="small")
    import_pairs(store, _records(100_000), dataset="big")
    small, big = _measure(store, "small"), _measure(store, "big")
    if "--no-rerun" not in sys.argv:
        reruns = _reruns(home)
        small["rerun"], big["rerun"] = reruns["small"], reruns["big"]
    for key in small:
        print(f"{key:<7} 1k {small[key]:7.2f} ms   100k {big[key]:7.2f} ms   "
              f"ratio {big[key] / small[key]:.2f}")
    t = time.perf_counter()
    pd.read_csv(CSV)
    pandas_s = time.perf_counter() - t
    t = time.perf_counter()
    import_pairs(store, CSV, dataset="childes")
    import_s = time.perf_counter() - t
    print(f"import 25k CSV {import_s * 1000:.0f} ms, pandas.read_csv {pandas_s * 1000:.0f} ms, "
          f"ratio {import_s / pandas_s:.1f}")


if __name__ == "__main__":
    main()
