"""The Space's request guard, in process: bodies limited before parsing, documented endpoints
only, refused routes; nothing reaches gradio that should not."""

from __future__ import annotations

import asyncio
import json

import pytest

from dpo_core.demo.guard import RequestGuard

LIMIT = 1000
DOCUMENTED = {3: "generate", 5: "vote_left"}


class Downstream:
    """Stands in for gradio: records what it was asked and reads the whole body."""

    def __init__(self):
        self.calls, self.bodies = 0, []

    async def __call__(self, scope, receive, send):
        self.calls += 1
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(path: str, body: bytes = b"", method: str = "POST", declared: int | None = None,
         chunk: int = 0) -> tuple[int, Downstream, int]:
    """(status, downstream, bytes the guard pulled from the client) for one request."""
    app = Downstream()
    guard = RequestGuard(app, LIMIT, DOCUMENTED)
    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "headers": headers}
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        if not pieces:
            return {"type": "http.disconnect"}
        piece = pieces.pop(0)
        pulled += len(piece)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    async def send(message):
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"], app, pulled


def join(fn_index, prompt: str = "hi") -> bytes:
    return json.dumps({"data": [prompt], "fn_index": fn_index, "session_hash": "s1"}).encode()


def test_a_declared_large_body_gets_413_without_being_read():
    big = b"x" * (50 * LIMIT)
    status, app, pulled = call("/gradio_api/queue/join", big, declared=len(big))
    assert (status, app.calls, pulled) == (413, 0, 0)


def test_an_undeclared_large_body_is_read_only_up_to_the_limit():
    big = join(3, "x" * 20 * LIMIT)
    status, app, pulled = call("/gradio_api/queue/join", big, chunk=256)
    assert (status, app.calls) == (413, 0)
    assert pulled <= LIMIT + 256


def test_a_documented_call_passes_with_its_body_intact():
    body = join(3)
    status, app, _ = call("/gradio_api/queue/join", body, declared=len(body), chunk=7)
    assert (status, app.calls, app.bodies) == (200, 1, [body])
    status, app, _ = call("/gradio_api/call/vote_left", b"{}", declared=2)
    assert (status, app.calls) == (200, 1)


@pytest.mark.parametrize("body", [join(4), join(None), join("3"), join(True), b"not json",
                                  b"[1, 2]"])
def test_queued_calls_of_undocumented_functions_are_refused(body):
    status, app, _ = call("/gradio_api/queue/join", body, declared=len(body))
    assert (status, app.calls) == (404, 0)


@pytest.mark.parametrize("path", ["/gradio_api/call/submit", "/gradio_api/run/submit",
                                  "/gradio_api/api/predict", "/gradio_api/call/v2/submit",
                                  "/gradio_api/component_server", "/gradio_api/process_recording",
                                  "/gradio_api/vibe-edit", "/gradio_api/upload",
                                  "/gradio_api/stream/abc", "/gradio_api/run-history/connect"])
def test_every_other_post_route_answers_404(path):
    status, app, _ = call(path, b"{}", declared=2)
    assert (status, app.calls) == (404, 0)


def test_frontend_bookkeeping_and_reads_pass():
    for path in ("/gradio_api/reset", "/gradio_api/cancel"):
        assert call(path, b"{}", declared=2)[0] == 200
    for path in ("/", "/config", "/gradio_api/info", "/gradio_api/queue/data"):
        assert call(path, method="GET")[0] == 200
    assert call("/gradio_api/file=/etc/passwd", method="GET")[0] == 404
    assert call("/assets/..%2F..%2Fetc%2Fpasswd", method="GET")[0] == 404


def test_a_get_declaring_a_huge_body_is_refused_too():
    status, app, pulled = call("/", method="GET", declared=10 * LIMIT)
    assert (status, app.calls, pulled) == (413, 0, 0)


def test_the_body_limit_fits_the_prompt_limit():
    from dpo_core.demo.config import DemoConfigError, Limits

    assert Limits().max_body_bytes == 65536
    assert Limits(max_prompt_chars=20000).max_body_bytes == 6 * 20000 + 4096  # room to type
    with pytest.raises(DemoConfigError, match="max_body_bytes is 100, too small"):
        Limits(max_body_bytes=100)
