"""Bounded load test of the exported Space demo on loopback: N clients for up to S seconds.

    python bench/load_demo.py [--clients 20] [--seconds 60] [--max-new-tokens 32] [--url URL]

Without --url it makes a finished tiny LoRA run in a temporary workspace, exports it as a Space
folder, starts that folder's `python app.py` on a free loopback port, and stops it at the end.
Prints requests, errors, p50/p95/max latency (seconds per full side-by-side answer) and whether
the demo still answers afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_tiny_space(root: Path, queue_size: int, threads: int) -> Path:
    from dpo_core.demo.config import CONFIG_FILE, Limits, load_config, write_config
    from dpo_core.publish.sample_run import make_sample_run
    from dpo_core.publish.space_export import export_space
    from dpo_core.store import Store
    from dpo_core.workspace import get_workspace

    ws = get_workspace(root / "lab")
    store = Store(ws.db_path)
    make_sample_run(ws, store)
    limits = Limits(max_new_tokens=64, concurrency_limit=1, max_queue_size=queue_size)
    out = Path(export_space(store, "run-tiny-demo", root / "space", limits=limits).out_dir)
    store.close()
    config = load_config(out / CONFIG_FILE)
    config.torch_threads = threads
    write_config(config, out)
    return out


def start_app(folder: Path, votes: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(GRADIO_ANALYTICS_ENABLED="False", DPO_DEMO_VOTES_DIR=str(votes), HF_HUB_OFFLINE="1")
    log = open(folder.parent / "app.log", "wb")
    proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(900):
        if proc.poll() is not None:
            raise SystemExit(f"the app exited: {(folder.parent / 'app.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/config", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the app did not come up")


def stop_app(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_clients(url: str, clients: int, seconds: float, max_new_tokens: int) -> dict:
    """Each client asks, waits for both answers, asks again, until the time is up."""
    from gradio_client import Client

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work(i: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as exc:  # counted, not fatal: the point is to see how many fail
            with lock:
                errors.append(f"connect: {exc}")
            return
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                client.predict(f"what is that ? ({i})", 0.7, 0.95, 50, max_new_tokens,
                               api_name="/generate")
                with lock:
                    latencies.append(time.perf_counter() - started)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 180)
    wall = time.monotonic() - started
    return summarize(latencies, errors, wall, clients)


def summarize(latencies: list[float], errors: list[str], wall: float, clients: int) -> dict:
    ordered = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3) if ordered else None

    return {"clients": clients, "wall_s": round(wall, 1), "requests": len(ordered),
            "errors": len(errors), "error_samples": sorted(set(errors))[:5],
            "p50_s": pct(0.50), "p95_s": pct(0.95), "max_s": round(ordered[-1], 3) if ordered
            else None, "mean_s": round(statistics.mean(ordered), 3) if ordered else None,
            "answers_per_s": round(len(ordered) / wall, 2) if wall else None}


def still_serving(url: str) -> bool:
    from gradio_client import Client

    try:
        Client(url, verbose=False).predict("still there ?", 0.7, 0.95, 50, 8,
                                           api_name="/generate")
        return True
    except Exception:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--url", default=None, help="a running demo (default: start a tiny one)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads per generation in the started app (0: default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="load-demo-") as tmp:
        proc = None
        url = args.url
        if url is None:
            os.environ["DPO_LAB_HOME"] = str(Path(tmp) / "lab")
            folder = export_tiny_space(Path(tmp), max(64, 2 * args.clients), args.threads)
            proc, url = start_app(folder, Path(tmp) / "votes")
        try:
            result = run_clients(url, args.clients, args.seconds, args.max_new_tokens)
            result["still_serving"] = still_serving(url)
            result["app_alive"] = proc is None or proc.poll() is None
        finally:
            if proc is not None:
                stop_app(proc)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['clients']} clients, {result['wall_s']} s: {result['requests']} answers, "
              f"{result['errors']} errors; latency p50 {result['p50_s']} s, p95 {result['p95_s']}"
              f" s, max {result['max_s']} s; still serving: {result['still_serving']}")
        for sample in result["error_samples"]:
            print(f"  error: {sample}")
    return 0 if result["still_serving"] and result["app_alive"] and not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
