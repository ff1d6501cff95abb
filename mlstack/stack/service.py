"""The small interface every service of the native stack implements, and what they share:
starting a process in its own session with its output in a log file, and noticing it died."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from mlstack.stack.config import Credentials, StackConfig
from mlstack.stack.processes import ProcessTable, wait_healthy


class Service:
    """One process of the stack. Subclasses set `name`, `title` and `port_flag` and implement
    `ports`, `start` and `problem`; the rest has working defaults."""

    name: str = ""  # key in pids.json and the log file's name
    title: str = ""  # for people, in errors
    port_flag: str = ""  # the `python -m mlstack.stack` flag that moves its ports
    stop_signal: int = signal.SIGTERM

    def __init__(self, config: StackConfig, pids: ProcessTable) -> None:
        self.config = config
        self.pids = pids

    @cached_property
    def creds(self) -> Credentials:
        """The stack's credentials (generated on first use, shared through the state dir)."""
        return Credentials.load_or_create(self.config.state_dir)

    @property
    def log_file(self) -> Path:
        """Where this service's output goes."""
        return self.config.logs / f"{self.name}.log"

    def ports(self) -> dict[str, int]:
        """Every TCP port it listens on, by a label that starts with its name."""
        raise NotImplementedError

    def preflight(self) -> None:
        """Raise StackError when it cannot start (a missing binary); runs before anything
        starts, so a missing part never leaves half a stack running."""

    def start(self) -> None:
        """Start it (it must be stopped) and return once it is healthy."""
        raise NotImplementedError

    def problem(self) -> str | None:
        """None when it answers its health check, else what is wrong."""
        raise NotImplementedError

    def adopt(self) -> None:
        """Checks for an instance an earlier `up` left running (which may have stopped
        half-way); the default has none beyond `problem`."""

    # -- helpers for subclasses ----------------------------------------------------------

    def spawn(self, argv: list[str], env: dict[str, str] | None = None, **popen: object) -> int:
        """Start `argv` detached (its own session: it outlives this command and Ctrl-C here
        does not reach it), output appended to the log file; record and return its pid."""
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                **popen,  # type: ignore[arg-type]
            )
        self.pids.record(self.name, proc.pid)
        return proc.pid

    def exited(self) -> str | None:
        """'process exited: <last log line>' once the recorded process is gone, else None."""
        if self.pids.alive_pid(self.name) is not None:
            return None
        tail = self.log_file.read_text(errors="replace").strip().splitlines()
        return "process exited: " + (tail[-1][:200] if tail else "no output")

    def wait_healthy(self, check: Callable[[], str | None] | None = None) -> None:
        """Block until `check()` (default: `problem()`) is None, or raise StackError after
        the configured timeout."""
        wait_healthy(check or self.problem, self.config.timeout_s, self.title, self.log_file)
