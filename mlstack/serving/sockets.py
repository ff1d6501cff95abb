"""The listening sockets, bound by the supervisor before any model loads: one per worker."""

from __future__ import annotations

import socket
from typing import Any

from mlstack.errors import UsageError


def bind_sockets(host: str, port: int, count: int = 1) -> list[socket.socket]:
    """`count` TCP sockets bound to host:port before any model loads (a port in use fails
    first, in a second). They listen once uvicorn serves them: until the model is loaded,
    clients are refused rather than left hanging.

    Several (one per worker) share the port through SO_REUSEPORT, so the kernel spreads new
    connections evenly over the workers; with one shared socket, whichever worker wakes first
    takes them all (measured: all 8 of wrk's connections on one of 2 workers). A plain bind
    first proves the port is free, so a second server on the same port is refused rather
    than silently sharing it.

    Created with proto=IPPROTO_TCP on purpose: asyncio turns on TCP_NODELAY for accepted
    connections only when the listener says TCP, and a socket made with proto 0 (as uvicorn's
    own multi-worker mode makes it, uvicorn #3149) leaves every kept-alive answer waiting
    ~40 ms for a delayed ACK.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UsageError(
            f"--host {host}: {exc.strerror}; give an IP address or a known name"
        ) from exc

    def bound(reuse_port: bool) -> socket.socket:
        try:
            return _bind(family, kind, proto, address, reuse_port=reuse_port)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses it or pick "
                "another --port"
            ) from exc

    bound(reuse_port=False).close()
    return [bound(reuse_port=True) for _ in range(count)]


def bind_again(sock: socket.socket) -> socket.socket:
    """A fresh socket on `sock`'s address in its SO_REUSEPORT group (for a restarted worker)."""
    return _bind(sock.family, sock.type, sock.proto, sock.getsockname(), reuse_port=True)


def _bind(family: int, kind: int, proto: int, address: Any, *, reuse_port: bool) -> socket.socket:
    """A bound, inheritable, not yet listening TCP socket (closed again if the bind fails)."""
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
