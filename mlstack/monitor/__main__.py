"""`python -m mlstack.monitor --model wine [--last N | --since 30m] [--labels FILE]`.

Compares the newest window of the model's prediction log with the serving version's reference
and logs the check in experiment `<model>-monitoring`. Prints one line. Exit codes:
0 no drift, 3 drift (0 with --exit-zero), 2 bad input (nothing is logged), 1 the tracking
store failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlstack import cli

PROG = "python -m mlstack.monitor"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    from mlstack.monitor.window import DEFAULT_LAST

    p = cli.OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--model", help="registered model name, e.g. wine (its newest log is read)")
    p.add_argument("--log", metavar="RUN_ID|DIR", help="a prediction log: run id or directory")
    p.add_argument("--since", help="window start: a duration back (30m, 2h, 1d) or a date-time")
    p.add_argument(
        "--last", type=int, help=f"window: the newest N predictions (default {DEFAULT_LAST})"
    )
    p.add_argument(
        "--labels", help="CSV/Parquet of request_id, label (or quality) [, row]: live performance"
    )
    p.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 after a completed check even when it found drift (mlflow run, schedulers)",
    )
    args = p.parse_args(argv)
    if args.last is not None and args.last < 1:
        p.error(f"--last {args.last}: give 1 or more")
    if not (args.model or args.log):
        p.error("name the model (--model NAME) or the log (--log RUN_ID|DIR)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point: check, print one line, exit with the drift code."""
    cli.quiet_third_party_logs()
    args = parse_args(argv)
    from mlstack.monitor.run import EXIT_DRIFT, EXIT_NO_DRIFT, monitor
    from mlstack.monitor.window import parse_since

    result = monitor(
        args.model or None,  # MLproject passes '' for "not given"
        log=args.log or None,
        since=parse_since(args.since) if args.since else None,
        last=args.last,
        labels=Path(args.labels) if args.labels else None,  # MLproject passes '' for none
        tags={"entry_point": "monitor"},
    )
    print(result.line())  # noqa: T201 (the CLI's own output)
    return EXIT_DRIFT if result.drift and not args.exit_zero else EXIT_NO_DRIFT


if __name__ == "__main__":
    sys.exit(cli.run_cli(PROG, main))
