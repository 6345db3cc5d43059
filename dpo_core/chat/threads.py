"""How generation's OpenMP threads wait, so that the thread a generation runs in never decides
its speed.

PyTorch's CPU kernels run on libgomp. Between the hundreds of small parallel regions of a decode
step, libgomp's idle team threads spin (300,000 iterations by default) unless it manages more
threads than there are cores; then it spins only 100 and sleeps. Which case applies depended on
the thread layout: a background thread (Chat's streams) gives the process a second thread pool,
so libgomp throttled its spinning; the caller's own thread (`compare`, win-rate replies, the pair
builders) was often the only pool, so its threads spun. Spinning wins on idle cores and loses
badly on a shared CPU: a spinning thread holds the core its partner needs to reach the barrier.
Measured on the default model (2 cores, 16 tokens): 15-28 s in the caller's thread against
1-1.5 s in a background thread with another process busy, and even without our hog, as soon as
the machine had other work.

Two changes make the caller's paths the background path at any load:
- `GOMP_SPINCOUNT=100` (libgomp's own throttled spin, what the background path got) makes the
  policy the same whatever the thread layout. libgomp reads it once, when torch loads it, so this
  module sets it on import, before any torch import (dpo_core imports torch lazily); a value the
  user set is kept. Scoring gains too (`evaluation/__init__.py` imports this module).
- `off_caller` runs a generation in a fresh thread and waits for it: the background path itself,
  also where torch was imported before the policy could be set.
`bench/bench_threads.py` measures both paths at load 0 and with a CPU hog.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

SPIN_ENV = "GOMP_SPINCOUNT"
SPINCOUNT = "100"
T = TypeVar("T")


def _set_wait_policy() -> bool:
    """Set the spin count for libgomp unless torch (and so libgomp) is loaded already."""
    if "torch" in sys.modules:
        return False
    os.environ.setdefault(SPIN_ENV, SPINCOUNT)
    return True


WAIT_POLICY_SET = _set_wait_policy()


def off_caller(fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)` in a fresh thread, waited for here: a caller's generation takes the
    background path (and its thread pool), never the caller's own."""
    result: list = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            result.append(fn(*args, **kwargs))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=work, name="dpo-generate", daemon=True)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return result[0]
