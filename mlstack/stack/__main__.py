"""`python -m mlstack.stack up|down|status|env|backup|restore|gc`: the native stack's command line.

    up / down [--purge] / status / env      start, stop, check the stack (make stack-up)
    backup --to DIR                          every database and object, while it serves
    restore --from DIR [--force]             into a fresh stack (checks the backup first)
    gc --older-than 30d [--dry-run]          `mlflow gc`: deleted runs/experiments for good

Exit codes: 0 done, 1 a service failed (its log is named), 2 bad input (an option to change).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlstack.cli import EXIT_FAILURE, EXIT_USAGE, OneLineErrorParser
from mlstack.stack.config import DEFAULT_STATE_DIR, StackConfig, StackError, StackUsageError
from mlstack.stack.native import NativeStack

PROG = "python -m mlstack.stack"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command and its options. Ports, bucket and workers are saved in the state
    directory by `up` and reused by later commands; --timeout applies to this command only."""
    p = OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["up", "down", "status", "env", "backup", "restore", "gc"])
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="data, logs, pids")
    p.add_argument("--pg-port", type=int, help="PostgreSQL port (default 55432)")
    p.add_argument("--s3-port", type=int, help="S3 port (default 8333; uses the next 4 too)")
    p.add_argument("--mlflow-port", type=int, help="MLflow server port (default 5000)")
    p.add_argument("--bucket", help="artifact bucket (default mlflow)")
    p.add_argument("--workers", type=int, help="MLflow server workers (default 1)")
    p.add_argument(
        "--pipelines",
        action="store_const",
        const=True,
        help="also the Prefect server and the retraining runner (make pipelines-up)",
    )
    p.add_argument("--prefect-port", type=int, help="Prefect server port (default 4200)")
    p.add_argument(
        "--artifacts",
        choices=["s3", "sftp"],
        help="artifact store: the S3 bucket (default) or an SFTP server (sshd, chrooted; root)",
    )
    p.add_argument("--sftp-port", type=int, help="SFTP server port (default 2022)")
    p.add_argument(
        "--sftp-root", help="SFTP files and chroot (default <state-dir>/sftp; root-owned path)"
    )
    p.add_argument("--retrain-models", help="models the runner retrains (default wine)")
    p.add_argument("--retrain-every", type=float, help="minutes between retraining runs (5)")
    p.add_argument(
        "--gc-older-than",
        help="with --pipelines: also run gc on a schedule for what was deleted this long ago "
        "(e.g. 30d; off by default, and `off` turns it off again)",
    )
    p.add_argument("--gc-every", type=float, help="with --gc-older-than: hours between runs (24)")
    p.add_argument(
        "--timeout", type=float, help="seconds to wait for each service, this command (default 90)"
    )
    p.add_argument("--purge", action="store_true", help="with down: delete all data and state")
    p.add_argument("--to", type=Path, help="backup: a new directory to write the backup into")
    p.add_argument("--from", dest="source", type=Path, help="restore: a backup directory")
    p.add_argument(
        "--force", action="store_true", help="restore: replace what a non-empty stack holds"
    )
    p.add_argument(
        "--older-than", help="gc: remove what was deleted longer ago than this (e.g. 30d)"
    )
    p.add_argument("--dry-run", action="store_true", help="gc: say what would go, delete nothing")
    args = p.parse_args(argv)
    _check_data_args(p, args)
    return args


def _check_data_args(p: OneLineErrorParser, args: argparse.Namespace) -> None:
    """What argparse cannot check: each data command's required option, gc ages, gc hours."""
    needs = {"backup": ("to", "--to DIR"), "restore": ("source", "--from DIR"),
             "gc": ("older_than", "--older-than AGE (e.g. 30d)")}  # fmt: skip
    if args.command in needs and getattr(args, needs[args.command][0]) is None:
        p.error(f"{args.command} needs {needs[args.command][1]}")
    from mlstack.stack.gc import parse_age

    if args.gc_older_than == "off":
        args.gc_older_than = ""  # saved as such: the runner deploys no gc from now on
    if args.gc_every is not None and args.gc_every <= 0:
        p.error(f"--gc-every {args.gc_every:g}: give hours > 0")
    for flag, age in (("--older-than", args.older_than), ("--gc-older-than", args.gc_older_than)):
        try:
            if age:
                parse_age(age, flag)  # before anything is asked of the stack
        except StackUsageError as exc:
            p.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mlstack.stack`."""
    args = parse_args(argv)
    config = StackConfig.load(
        args.state_dir.resolve(),
        pg_port=args.pg_port,
        s3_port=args.s3_port,
        mlflow_port=args.mlflow_port,
        bucket=args.bucket,
        workers=args.workers,
        pipelines=args.pipelines,
        prefect_port=args.prefect_port,
        artifacts=args.artifacts,
        sftp_port=args.sftp_port,
        sftp_root=args.sftp_root,
        retrain_models=args.retrain_models,
        retrain_every_min=args.retrain_every,
        gc_older_than=args.gc_older_than,
        gc_every_h=args.gc_every,
        timeout_s=args.timeout,
    )
    stack = NativeStack(config)
    try:
        if args.command == "up":
            stack.up(echo=print)
            print(f"tracking server: {config.tracking_uri} (UI and API); for clients:")
            print(f"export MLFLOW_TRACKING_URI={config.tracking_uri}")
            if config.pipelines:
                print(f"Prefect UI: {config.prefect_api_url.removesuffix('/api')}; retraining "
                    f"{config.retrain_models} every {config.retrain_every_min:g} min; label "
                    f"files go into {config.labels_dir}/<model>/")  # fmt: skip
                print(f"export PREFECT_API_URL={config.prefect_api_url}")
        elif args.command == "down":
            stack.down(purge=args.purge, echo=print)
        elif args.command == "backup":
            stack.backup(args.to, echo=print)
        elif args.command == "restore":
            stack.restore(args.source, force=args.force, echo=print)
        elif args.command == "gc":
            stack.gc(args.older_than, dry_run=args.dry_run, echo=print)
        elif args.command == "status":
            for name, state in stack.status().items():
                print(f"{name:9} {state}")
        else:
            print(f"export MLFLOW_TRACKING_URI={config.tracking_uri}")
    except StackError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, StackUsageError) else EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
