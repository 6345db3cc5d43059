"""Helpers for driving an exported Space: its `python app.py` on a free loopback port, a gradio
client, raw HTTP, and the server's resident memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dpo_core.demo.config import Limits

LIMITS = Limits(max_prompt_chars=200, max_history_turns=2, max_new_tokens=12,
                concurrency_limit=1, max_queue_size=2, max_body_bytes=16384,
                votes_per_minute=6, max_votes=1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SpaceServer:
    """`python app.py` in the exported folder, on a free loopback port, in its own group."""

    def __init__(self, folder: Path, votes: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DPO_LAB_HOME")}
        env.update(GRADIO_ANALYTICS_ENABLED="False", DPO_DEMO_VOTES_DIR=str(votes),
                   HF_HUB_OFFLINE="1", GRADIO_SERVER_NAME="127.0.0.1")
        self.log = folder.parent / "space.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port)],
                                         cwd=folder, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._wait()

    def _wait(self) -> None:
        for _ in range(900):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/config", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the app did not come up: {self.log.read_text()[-3000:]}")

    def rss_mb(self) -> float:
        """The server's resident memory now (its own process: gradio serves from threads)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS for the Space process")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def client(space):
    from gradio_client import Client

    return Client(space.url, verbose=False)


def ask(client, prompt="what is that ?", max_new_tokens=8, temperature=0.7):
    left, right, details = client.predict(prompt, temperature, 0.95, 50, max_new_tokens,
                                          api_name="/generate")
    return left, right, details


def text_of(message: dict) -> str:
    """A chatbot message's text (gradio 6 sends content as a list of typed parts)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
