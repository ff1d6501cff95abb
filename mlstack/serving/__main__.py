"""`python -m mlstack.serving --model-uri models:/wine@champion [--port P] [--workers N]`.

Binds the port and loads the model first (a port in use, a missing model or a broken version
stops here with one line, exit 2), then serves it with uvicorn: in this process, or with
`--workers N` in N processes under a supervisor (mlstack/serving/workers.py). See
mlstack/serving/__init__.py for the routes.
"""

from __future__ import annotations

import logging
import sys

from mlstack.cli import OneLineErrorParser, run_cli


def parse_args(argv: list[str] | None):
    """The runner's command line."""
    p = OneLineErrorParser(prog="python -m mlstack.serving", description=__doc__)
    p.add_argument("--model-uri", required=True, help="models:/NAME@ALIAS, models:/NAME/N, ...")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port (default 1; about one per CPU core)",
    )
    p.add_argument(
        "--max-body-mb", type=float, default=5.0, help="largest request body (default 5 MB)"
    )
    p.add_argument(
        "--follow-alias",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="check the alias every SECONDS and reload when it moved (default 0: off)",
    )
    p.add_argument(
        "--log-predictions",
        metavar="DEST",
        help="record every answered request as Parquet files (for drift monitoring): DEST is a "
        "directory, or `mlflow[:EXPERIMENT]` for artifacts of a run on the tracking store "
        "(a server's S3 bucket; experiment default: <model>-predictions)",
    )
    p.add_argument("--log-batch", type=int, default=1000, help="records per file (default 1000)")
    p.add_argument(
        "--log-flush-s", type=float, default=5.0, help="write at least this often (default 5 s)"
    )
    p.set_defaults(prediction_run_id=None)  # set while serving with --log-predictions mlflow
    args = p.parse_args(argv)
    if args.log_batch < 1 or args.log_flush_s <= 0:
        p.error("--log-batch must be >= 1 and --log-flush-s > 0")
    if not 0 < args.port < 65536:
        p.error(f"--port {args.port} is not a TCP port (1-65535)")
    if args.workers < 1:
        p.error(f"--workers {args.workers}: give 1 or more")
    if args.max_body_mb <= 0 or args.follow_alias < 0:
        p.error("--max-body-mb must be > 0 and --follow-alias >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mlstack.serving`."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def body() -> int:
        if args.workers == 1:
            from mlstack.serving.runner import serve_one

            return serve_one(args)
        from mlstack.serving.workers import serve_many

        return serve_many(args)

    return run_cli("python -m mlstack.serving", body)


if __name__ == "__main__":
    sys.exit(main())
