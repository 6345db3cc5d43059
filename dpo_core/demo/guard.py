"""What reaches the demo's server: an ASGI middleware in front of gradio.

- Request bodies are limited before anything parses them: a declared Content-Length over the
  limit gets 413 at once (the body is never read), a body sent without one is read only up to
  the limit. The server's memory stays where it was, whatever visitors send.
- Only the documented endpoints run: a POST must join the queue for a documented function (its
  fn_index is checked in the body) or name one (`/call/generate`); reset and cancel are the
  frontend's own bookkeeping. Every other POST route (uploads, component servers, recordings,
  streams) answers 404, as do file, proxy and traversal paths of any method.

Copied into exported Space folders: standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from urllib.parse import unquote

REFUSED_ROUTES = ("/file=", "/proxy=", "/upload", "/run-history", "/monitoring",
                  "/custom_component", "/stream/")
API_PREFIX = "/gradio_api"
QUEUE_JOIN = "/queue/join"
BOOKKEEPING = ("/reset", "/cancel")  # the frontend's own session calls; they run no function
NAMED_CALL = re.compile(r"^/(?:call/v2|call|run|api)/([^/]+)/?$")


def refused(scope) -> bool:
    """A file, proxy, upload or traversal path, however it is encoded."""
    raw = scope.get("raw_path") or b""
    texts = [scope.get("path", ""), unquote(raw.decode("latin-1")),
             unquote(unquote(raw.decode("latin-1")))]
    return any(".." in t or any(r in t for r in REFUSED_ROUTES) for t in texts)


class RequestGuard:
    """ASGI middleware: body limit, documented endpoints only, refused routes.

    `endpoints` maps each documented function's id (gradio's fn_index) to its API name.
    """

    def __init__(self, app, max_body_bytes: int, endpoints: Mapping[int, str]):
        self.app, self.max_body_bytes = app, int(max_body_bytes)
        self.endpoints = dict(endpoints)
        self.names = set(self.endpoints.values())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if refused(scope):
            await _answer(send, 404, b"Not found")
            return
        if _declared_length(scope) > self.max_body_bytes:
            await _answer(send, 413, b"Request body too large")
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        path = path[len(API_PREFIX):] if path.startswith(API_PREFIX + "/") else path
        if not self._may_post(path):
            await _answer(send, 404, b"Not found")
            return
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            await _answer(send, 413, b"Request body too large")
            return
        if path.rstrip("/") == QUEUE_JOIN and not self._documented(body):
            await _answer(send, 404, b"Not found")
            return
        await self.app(scope, _replay(body, receive), send)

    def _may_post(self, path: str) -> bool:
        if path.rstrip("/") in (QUEUE_JOIN, *BOOKKEEPING):
            return True
        named = NAMED_CALL.match(path)
        return bool(named) and named.group(1) in self.names

    def _documented(self, body: bytes) -> bool:
        """The queued call names a documented function (by index, as gradio dispatches)."""
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return False
        index = data.get("fn_index") if isinstance(data, dict) else None
        return isinstance(index, int) and not isinstance(index, bool) and \
            index in self.endpoints


def _declared_length(scope) -> int:
    for key, value in scope.get("headers") or ():
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 1 << 62  # unreadable: treat as too large
    return 0


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` (the rest is never read)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _answer(send, status: int, text: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(text)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": text})
