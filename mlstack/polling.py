"""Wait for a condition with a deadline: the one poll loop every waiter in the project uses."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll_until(
    check: Callable[[], str | None],
    timeout_s: float,
    interval_s: float = 0.25,
    stop: Callable[[], bool] | None = None,
) -> str | None:
    """Call `check` until it returns None (done) or `timeout_s` passes; return the last problem.

    `check` answers None when the condition holds, else a short description of what is
    still wrong, which the caller puts in its error. `stop` ends the wait early (returning
    the last problem) when it answers True, e.g. on shutdown.
    """
    deadline = time.monotonic() + timeout_s
    problem: str | None = "no answer yet"
    while True:
        problem = check()
        if problem is None:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (stop is not None and stop()):
            return problem
        time.sleep(min(interval_s, remaining))
