"""Plumbing shared by the command-line entry points: one-line errors, exit codes, logging."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from mlflow.exceptions import MlflowException

from mlstack.errors import UsageError
from mlstack.settings import Settings
from mlstack.tracking import Terminated, TrainResult, describe_server_error, run_link

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (problem and fix) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def quiet_third_party_logs() -> None:
    """Keep TensorFlow's C++ banner and MLflow's chatter out of the way of our progress lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("mlflow", "alembic", "urllib3", "absl", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_cli(prog: str, main: Callable[[], int | None]) -> int:
    """Run `main`; map a UsageError to one stderr line and exit 2, interrupts to 130/143."""
    try:
        return main() or 0
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)  # noqa: T201 (the CLI's own output)
        return EXIT_USAGE
    except MlflowException as exc:
        # The server or store failed, not the user's input: exit 1, one line, run marked FAILED.
        print(f"{prog}: error: {describe_server_error(exc)}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; a started run is marked FAILED", file=sys.stderr)  # noqa: T201
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{prog}: terminated; a started run is marked FAILED", file=sys.stderr)  # noqa: T201
        return EXIT_TERMINATED


def summary_lines(result: TrainResult, settings: Settings) -> list[str]:
    """What a training command tells a person at the end: run id, metrics, registry, link."""
    metrics = " ".join(
        f"{k}={v:.4f}" for k, v in result.metrics.items() if not k.endswith("_seconds")
    )
    lines = [f"run {result.run_id} finished in experiment {result.experiment_id}", metrics]
    if result.promotion:
        lines.append(result.promotion.summary())
    lines.append(f"look: {run_link(settings, result.experiment_id, result.run_id)}")
    return lines
