"""Browser tier: Debian's Chromium driven by Playwright (the `browser` and `page` fixtures of
tests/conftest.py, shared with the Docker tier) against the real web client
(`python -m mlstack.client`) and our real model server, on an embedded store."""

from __future__ import annotations

import sys

from mlstack.stack import free_port
from tests.helpers import http_server


def serve(env: dict[str, str], model_uri: str, *args: str):
    """Our model server for `model_uri` on a free port (a context manager: its URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.serving", "--model-uri", model_uri,
           "--port", str(port), *args]  # fmt: skip
    return http_server(cmd, env, port, f"our server for {model_uri}")


def start_client(env: dict[str, str], server_url: str):
    """`python -m mlstack.client` for `server_url` on a free port (a context manager: its URL,
    once healthy)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.client", "--server-url", server_url, "--port", str(port)]
    return http_server(cmd, env, port, "the web client", health="/_stcore/health")
