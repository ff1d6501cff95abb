"""Processes and ports: the pids a stack started (so `down` stops exactly those), free ports,
and waiting on a health check with a deadline."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Callable
from pathlib import Path

from mlstack.polling import poll_until
from mlstack.stack.config import GRPC_OFFSET, HOST, StackError, write_private


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid`: with the pid it identifies one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _is_zombie(pid: int) -> bool:
    """A zombie has exited; only its parent has not reaped it yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


class ProcessTable:
    """The pids this stack started, with their start times, in `<state_dir>/pids.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "pids.json"

    def read(self) -> dict[str, dict[str, object]]:
        """All recorded services (alive or not)."""
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def record(self, name: str, pid: int) -> None:
        """Remember that `name` runs as `pid`."""
        table = self.read()
        table[name] = {"pid": pid, "start_time": start_time(pid)}
        write_private(self.path, json.dumps(table, indent=2))

    def forget(self, name: str) -> None:
        """Drop `name` from the table."""
        table = self.read()
        table.pop(name, None)
        write_private(self.path, json.dumps(table, indent=2))

    def alive_pid(self, name: str) -> int | None:
        """The pid of `name` if that very process still runs (not a reused pid)."""
        entry = self.read().get(name)
        if not entry:
            return None
        pid = int(entry["pid"])  # type: ignore[arg-type]
        started = start_time(pid)
        if started is None or started != entry["start_time"] or _is_zombie(pid):
            return None
        return pid


def port_free(port: int) -> bool:
    """True when nothing listens on (or holds) `port` on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def find_free_ports(low: int = 20_000, high: int = 29_000) -> dict[str, int]:
    """StackConfig port overrides that are all free now: an S3 base whose +0..+4 (and each
    +10000 for SeaweedFS' gRPC) are free, PostgreSQL at base+5, MLflow at base+6 and Prefect
    at base+7.

    For throwaway stacks (tests, benchmarks) that must not collide with a running one.
    """
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high, 10)
        wanted = [base + i for i in range(8)] + [base + i + GRPC_OFFSET for i in range(5)]
        if all(port_free(p) for p in wanted):
            return {
                "s3_port": base,
                "pg_port": base + 5,
                "mlflow_port": base + 6,
                "prefect_port": base + 7,
            }
    raise StackError(f"no free port range found between {low} and {high}")


def free_port() -> int:
    """One TCP port free on 127.0.0.1 right now (the kernel picks it), for a single server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_healthy(
    check: Callable[[], str | None], timeout_s: float, what: str, log_file: Path
) -> None:
    """Poll `check` (None = healthy, else the latest problem) until healthy or `timeout_s`."""
    problem = poll_until(lambda: check() or None, timeout_s)
    if problem is None:
        return
    raise StackError(f"{what} not healthy after {timeout_s:.0f}s ({problem}); see {log_file}")
