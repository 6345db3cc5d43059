"""The Hugging Face hub as the lab meets it: a hub id is usable when this machine has it cached
or can reach the hub; otherwise the error comes at once, naming the offline way."""

from __future__ import annotations

import os

from .errors import ModelError

HUB_TIMEOUT_S = 3.0


def hub_id(spec: str, offline_spec: str) -> str:
    """A hub id, if this machine has it cached or can reach the hub; else a clear error at
    once (transformers would retry for half a minute, then raise a bare OSError)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(spec, "config.json"), str):
        return spec
    reason = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else _unreachable(
        constants.ENDPOINT)
    if reason:
        raise ModelError(f"Model '{spec}' is a hub id that is not in this machine's Hugging Face "
                         f"cache, and the hub cannot be reached ({reason}).",
                         f"Use {offline_spec} (works offline) or a local model folder; or "
                         f"download it where the hub is reachable (`huggingface-cli download "
                         f"{spec}`) and copy the cache here.")
    return spec


def _unreachable(endpoint: str) -> str:
    """'' when the hub's host accepts a connection within HUB_TIMEOUT_S, else why not."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return ""  # behind a proxy a direct probe proves nothing: let the download try
    try:
        socket.create_connection((host, port), timeout=HUB_TIMEOUT_S).close()
    except OSError as exc:
        return f"{host}: {exc.strerror or type(exc).__name__}"
    return ""
