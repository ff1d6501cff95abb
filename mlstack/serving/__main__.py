"""`python -m mlstack.serving --model-uri models:/wine@champion [--host H] [--port P]`.

Loads the model first (a missing model or a broken version stops here with one line, exit 2),
then serves it with uvicorn. See mlstack/serving/__init__.py for the routes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from mlstack.cli import OneLineErrorParser, run_cli
from mlstack.errors import UsageError


def parse_args(argv: list[str] | None):
    """The runner's command line."""
    p = OneLineErrorParser(prog="python -m mlstack.serving", description=__doc__)
    p.add_argument("--model-uri", required=True, help="models:/NAME@ALIAS, models:/NAME/N, ...")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
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
        type=Path,
        metavar="DIR",
        help="write every answered request to Parquet files in DIR (for drift monitoring)",
    )
    p.add_argument("--log-batch", type=int, default=1000, help="records per file (default 1000)")
    p.add_argument(
        "--log-flush-s", type=float, default=5.0, help="write at least this often (default 5 s)"
    )
    args = p.parse_args(argv)
    if args.log_batch < 1 or args.log_flush_s <= 0:
        p.error("--log-batch must be >= 1 and --log-flush-s > 0")
    if not 0 < args.port < 65536:
        p.error(f"--port {args.port} is not a TCP port (1-65535)")
    if args.max_body_mb <= 0 or args.follow_alias < 0:
        p.error("--max-body-mb must be > 0 and --follow-alias >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mlstack.serving`."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def body() -> int:
        import mlflow
        import uvicorn
        from mlflow.exceptions import MlflowException

        from mlstack.serving.app import create_app
        from mlstack.serving.model import MODEL_URI, load_model
        from mlstack.serving.predlog import PredictionLog
        from mlstack.settings import get_settings
        from mlstack.tracking import configure_tracking

        # The same store as training: the embedded one unless MLFLOW_TRACKING_URI is set.
        configure_tracking(get_settings())
        client = mlflow.MlflowClient()

        def loader():
            return load_model(args.model_uri, client)

        try:
            model = loader()
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise UsageError(
                    f"cannot load {args.model_uri}: {exc.message.splitlines()[0]}; check the "
                    "name and alias/version (and MLFLOW_TRACKING_URI)"
                ) from exc
            raise
        alias = MODEL_URI.match(args.model_uri)
        if args.follow_alias and not (alias and alias["alias"]):
            raise UsageError("--follow-alias needs a models:/NAME@ALIAS model URI")

        def latest_version() -> str:
            return str(client.get_model_version_by_alias(alias["name"], alias["alias"]).version)

        app = create_app(
            model,
            loader,
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            follow_every_s=args.follow_alias,
            latest_version=latest_version if args.follow_alias else None,
            predlog=(
                PredictionLog(
                    args.log_predictions, batch_size=args.log_batch, flush_every_s=args.log_flush_s
                )
                if args.log_predictions
                else None
            ),
        )
        print(  # noqa: T201 (the runner's own output)
            f"serving {args.model_uri} (version {model.version}, "
            f"fast path {'on' if model.estimator is not None else 'off'}) "
            f"on http://{args.host}:{args.port}",
            flush=True,
        )
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
        return 0

    return run_cli("python -m mlstack.serving", body)


if __name__ == "__main__":
    sys.exit(main())
