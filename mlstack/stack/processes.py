"""Processes and ports: the pids a stack started (so `down` stops exactly those), free ports,
and waiting on a health check with a deadline."""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import Callable
from pathlib import Path

import psutil

from mlstack.polling import poll_until
from mlstack.stack.config import GRPC_OFFSET, HOST, StackError, write_private


def start_time(pid: int) -> float | None:
    """When `pid` started (seconds since the epoch): with the pid it names one process for good."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _recorded_start(entry: dict[str, object]) -> float | None:
    """The start time a table entry holds. Tables written before psutil hold the kernel's
    start time in clock ticks since boot ("start_time"): converted the way psutil computes
    create_time on Linux, so `down` still stops a stack started by the older code."""
    created = entry.get("create_time")
    if isinstance(created, int | float):
        return float(created)
    ticks = entry.get("start_time")
    if not isinstance(ticks, str) or not ticks.isdigit():
        return None
    return psutil.boot_time() + int(ticks) / os.sysconf("SC_CLK_TCK")


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
        table[name] = {"pid": pid, "create_time": start_time(pid)}
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
        recorded = _recorded_start(entry)
        try:
            process = psutil.Process(pid)
            started, zombie = process.create_time(), process.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return None
        # A zombie has exited (only its parent has not reaped it); a small tolerance, since the
        # kernel counts start times in clock ticks.
        if recorded is None or abs(started - recorded) > 0.05 or zombie:
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
    +10000 for SeaweedFS' gRPC) are free, PostgreSQL at base+5, MLflow at base+6, Prefect
    at base+7 and SFTP at base+8.

    For throwaway stacks (tests, benchmarks) that must not collide with a running one.
    """
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high, 10)
        wanted = [base + i for i in range(9)] + [base + i + GRPC_OFFSET for i in range(5)]
        if all(port_free(p) for p in wanted):
            return {
                "s3_port": base,
                "pg_port": base + 5,
                "mlflow_port": base + 6,
                "prefect_port": base + 7,
                "sftp_port": base + 8,
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
