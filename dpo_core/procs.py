"""Process helpers: is a pid still the process we started (not a recycled pid)?"""

from __future__ import annotations

import os
from pathlib import Path


def process_start_time(pid: int) -> float | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    # Field 22 (starttime) comes after the command name, which may contain spaces.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished
        return None
    return float(fields[19])


def process_alive(pid: int | None, start_time: float | None = None) -> bool:
    """True if `pid` runs and, when `start_time` is given, is the same process as then."""
    if not pid:
        return False
    started = process_start_time(int(pid))
    if started is None:
        if not Path("/proc").is_dir():  # not Linux: fall back to a signal probe
            try:
                os.kill(int(pid), 0)
                return True
            except OSError:
                return False
        return False
    return start_time is None or abs(started - start_time) < 1e-6
