"""Plumbing shared by the command-line entry points: one-line errors, exit codes, logging,
and the main of the training scripts. Imports no MLflow: `--help` and a bad argument answer
before any heavy library loads."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlstack.errors import UsageError

if TYPE_CHECKING:
    from mlstack.settings import Settings
    from mlstack.tracking import TrainResult

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (problem and fix) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def quiet_third_party_logs() -> None:
    """Keep TensorFlow's C++ banner and MLflow's chatter out of the way of our progress lines.

    Call it first thing in an entry point. Importing mlflow re-levels its own logger from
    MLFLOW_LOGGING_LEVEL (INFO when unset), so a level set here before that import is undone;
    the variable holds for the import and for child processes. A value you export wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    mlflow_level = os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING").upper()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("alembic", "urllib3", "absl", "matplotlib", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(mlflow_level)  # for when mlflow is imported already


def _is_mlflow_error(exc: BaseException) -> bool:
    # An MlflowException can only exist once mlflow.exceptions was imported.
    module = sys.modules.get("mlflow.exceptions")
    return module is not None and isinstance(exc, module.MlflowException)


def _is_terminated(exc: BaseException) -> bool:
    module = sys.modules.get("mlstack.tracking")
    return module is not None and isinstance(exc, module.Terminated)


def run_cli(prog: str, main: Callable[[], int | None]) -> int:
    """Run `main`; map a UsageError to one stderr line and exit 2, interrupts to 130/143."""
    try:
        return main() or 0
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)  # noqa: T201 (the CLI's own output)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; a started run is marked FAILED", file=sys.stderr)  # noqa: T201
        return EXIT_INTERRUPTED
    except BaseException as exc:
        if _is_mlflow_error(exc):
            # The server or store failed, not the user's input: exit 1, one line, run FAILED.
            from mlstack.tracking import describe_server_error

            print(f"{prog}: error: {describe_server_error(exc)}", file=sys.stderr)  # noqa: T201
            return EXIT_FAILURE
        if _is_terminated(exc):
            print(f"{prog}: terminated; a started run is marked FAILED", file=sys.stderr)  # noqa: T201
            return EXIT_TERMINATED
        raise


def add_run_flags(p: argparse.ArgumentParser, *, experiment: str, better: str) -> None:
    """The flags every training script has: --experiment and --register-as."""
    p.add_argument("--experiment", default=experiment, help="MLflow experiment name")
    p.add_argument(
        "--register-as",
        metavar="NAME",
        default=None,
        help=f"register the model under NAME; alias challenger, champion if {better}",
    )


def train_main(train: Callable[..., TrainResult], params: object, args: argparse.Namespace) -> int:
    """What a training script does once its arguments are parsed: `train(params, ...)` with
    the flags every script shares, on the configured store, then print the run id, metrics,
    registry decision and link."""
    from mlstack.settings import get_settings

    settings = get_settings()
    result = train(
        params,
        data=args.data or None,  # MLproject passes '' for "use the default"
        experiment=args.experiment,
        register_as=args.register_as or None,
        settings=settings,
    )
    print("\n".join(summary_lines(result, settings)))  # noqa: T201 (the CLI's own output)
    return 0


def summary_lines(result: TrainResult, settings: Settings) -> list[str]:
    """What a training command tells a person at the end: run id, metrics, registry, link."""
    from mlstack.tracking import run_link

    metrics = " ".join(
        f"{k}={v:.4f}" for k, v in result.metrics.items() if not k.endswith("_seconds")
    )
    lines = [f"run {result.run_id} finished in experiment {result.experiment_id}", metrics]
    if result.promotion:
        lines.append(result.promotion.summary())
    lines.append(f"look: {run_link(settings, result.experiment_id, result.run_id)}")
    return lines
