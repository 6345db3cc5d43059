"""Job processes: is a pid still the process we started (not a recycled pid), its process group,
and launching one without a shell, in its own session, with output to a log file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

LOG_FILE = "worker.log"
LEGACY_LOG_FILE = "job.log"  # what non-training jobs logged to before one lifecycle
_children: dict[int, subprocess.Popen] = {}  # processes this process started, reaped on reads


def process_start_time(pid: int) -> float | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) comes after the command name, which may contain spaces.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished
        return None
    return float(fields[19])


def reap() -> None:
    """Collect the exit status of our own finished children (so they are not zombies)."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            _children.pop(pid, None)


def process_alive(pid: int | None, start_time: float | None = None) -> bool:
    """True if `pid` runs and, when `start_time` is given, is the same process as then."""
    if not pid:
        return False
    reap()
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


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids in a process group."""
    reap()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def signal_group(pgid: int | None, sig: int) -> None:
    """Send `sig` to a process group; a group that is gone already is fine."""
    if not pgid:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_group_gone(pgid: int | None, timeout: float = 10.0) -> None:
    """Kill stragglers of the group (forked helpers) so nothing of the job is left behind."""
    deadline = time.monotonic() + timeout
    while pgid and time.monotonic() < deadline:
        if not group_members(pgid):
            return
        signal_group(pgid, signal.SIGKILL)
        time.sleep(0.1)


def launch(cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start `cmd` in a new session (its own process group), output appended to `log_path`.

    Never a pipe to us: a full pipe froze training once when the reader went away.
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env=env, cwd=str(cwd))
    _children[proc.pid] = proc
    return proc


def log_tail(run_dir: str | Path, lines: int = 30) -> str:
    """The last lines of the job's log (for error texts, `jobs show` and the Runs page)."""
    folder = Path(run_dir or ".")
    path = next((folder / n for n in (LOG_FILE, LEGACY_LOG_FILE) if (folder / n).is_file()), None)
    if not run_dir or path is None:
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 20000))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])
