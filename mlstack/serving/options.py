"""The server's options, typed and frozen: built once from the command line and handed to the
supervisor and every worker unchanged."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from mlstack.cli import OneLineErrorParser
from mlstack.errors import UsageError
from mlstack.logstore import predictions_experiment
from mlstack.serving.model import MODEL_URI

PROG = "python -m mlstack.serving"


@dataclass(frozen=True)
class ServeOptions:
    """Everything `python -m mlstack.serving` was told."""

    model_uri: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_mb: float = 5.0
    follow_alias_s: float = 0.0  # 0: off
    log_predictions: str | None = None  # a directory, or mlflow[:EXPERIMENT]
    log_batch: int = 1000
    log_flush_s: float = 5.0
    max_batch_size: int = 64  # rows (images) per model call, tensor models
    max_batch_ms: float = 2.0  # 0: no batching

    @property
    def max_body_bytes(self) -> int:
        """The request body limit in bytes."""
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def prediction_experiment(self) -> str | None:
        """The experiment of `--log-predictions mlflow[:EXPERIMENT]` (None for a directory or
        no log): EXPERIMENT, else `<model>-predictions`."""
        dest = self.log_predictions or ""
        if dest != "mlflow" and not dest.startswith("mlflow:"):
            return None
        if named := dest.removeprefix("mlflow").removeprefix(":"):
            return named
        match = MODEL_URI.match(self.model_uri)
        return predictions_experiment(match["name"]) if match else "predictions"

    def check(self) -> None:
        """Raise UsageError for a combination no server can honour."""
        match = MODEL_URI.match(self.model_uri)
        if self.follow_alias_s and not (match and match["alias"]):
            raise UsageError("--follow-alias needs a models:/NAME@ALIAS model URI")


def parse_args(argv: list[str] | None = None) -> ServeOptions:
    """The command line, checked: a bad value exits 2 with one line."""
    p = OneLineErrorParser(prog=PROG, description="Serve an MLflow model over HTTP.")
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
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=64,
        help="tensor models (Keras): rows of concurrent requests per model call (default 64)",
    )
    p.add_argument(
        "--max-batch-ms",
        type=float,
        default=2.0,
        help="tensor models: how long a request on an idle server waits for others to share "
        "its model call (default 2 ms; 0: no batching)",
    )
    args: argparse.Namespace = p.parse_args(argv)
    if args.log_batch < 1 or args.log_flush_s <= 0:
        p.error("--log-batch must be >= 1 and --log-flush-s > 0")
    if not 0 < args.port < 65536:
        p.error(f"--port {args.port} is not a TCP port (1-65535)")
    if args.workers < 1:
        p.error(f"--workers {args.workers}: give 1 or more")
    if args.max_body_mb <= 0 or args.follow_alias < 0:
        p.error("--max-body-mb must be > 0 and --follow-alias >= 0")
    if args.max_batch_size < 1 or not 0 <= args.max_batch_ms <= 1000:
        p.error("--max-batch-size must be >= 1 and --max-batch-ms 0-1000 (0: no batching)")
    return ServeOptions(
        model_uri=args.model_uri,
        host=args.host,
        port=args.port,
        workers=args.workers,
        max_body_mb=args.max_body_mb,
        follow_alias_s=args.follow_alias,
        log_predictions=args.log_predictions,
        log_batch=args.log_batch,
        log_flush_s=args.log_flush_s,
        max_batch_size=args.max_batch_size,
        max_batch_ms=args.max_batch_ms,
    )
