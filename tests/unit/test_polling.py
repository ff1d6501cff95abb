"""The shared poll loop: returns None when the condition holds, the last problem on timeout."""

import time

from mlstack.polling import poll_until


def test_returns_none_once_the_condition_holds() -> None:
    answers = iter(["starting", "starting", None])
    assert poll_until(lambda: next(answers), timeout_s=5, interval_s=0.01) is None


def test_returns_the_last_problem_after_the_deadline() -> None:
    started = time.monotonic()
    assert poll_until(lambda: "still down", timeout_s=0.2, interval_s=0.05) == "still down"
    assert 0.2 <= time.monotonic() - started < 2


def test_stop_ends_the_wait_early() -> None:
    started = time.monotonic()
    problem = poll_until(lambda: "waiting", timeout_s=30, interval_s=0.01, stop=lambda: True)
    assert problem == "waiting"
    assert time.monotonic() - started < 1
