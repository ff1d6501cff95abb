"""Starting the server: the listening socket, the model, the app, uvicorn (one worker or many)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlstack.errors import UsageError
from mlstack.serving.model import MODEL_URI, ServedModel, load_model


def bind_sockets(host: str, port: int, count: int = 1) -> list[socket.socket]:
    """`count` TCP sockets bound to host:port before any model loads (a port in use fails
    first, in a second). They listen once uvicorn serves them: until the model is loaded,
    clients are refused rather than left hanging.

    Several (one per worker) share the port through SO_REUSEPORT, so the kernel spreads new
    connections evenly over the workers; with one shared socket, whichever worker wakes first
    takes them all (measured: all 8 of wrk's connections on one of 2 workers). A plain bind
    first proves the port is free, so a second server on the same port is refused rather
    than silently sharing it.

    Created with proto=IPPROTO_TCP on purpose: asyncio turns on TCP_NODELAY for accepted
    connections only when the listener says TCP, and a socket made with proto 0 (as uvicorn's
    own multi-worker mode makes it, uvicorn #3149) leaves every kept-alive answer waiting
    ~40 ms for a delayed ACK.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UsageError(
            f"--host {host}: {exc.strerror}; give an IP address or a known name"
        ) from exc

    def bound(reuse_port: bool) -> socket.socket:
        try:
            return _bind(family, kind, proto, address, reuse_port=reuse_port)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses it or pick "
                "another --port"
            ) from exc

    if count > 1:
        bound(reuse_port=False).close()
    return [bound(reuse_port=count > 1) for _ in range(count)]


def bind_again(sock: socket.socket) -> socket.socket:
    """A fresh socket on `sock`'s address in its SO_REUSEPORT group (for a restarted worker)."""
    return _bind(sock.family, sock.type, sock.proto, sock.getsockname(), reuse_port=True)


def _bind(family: int, kind: int, proto: int, address: Any, *, reuse_port: bool) -> socket.socket:
    """A bound, inheritable, not yet listening TCP socket (closed again if the bind fails)."""
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serving_line(args: argparse.Namespace, model: dict[str, Any]) -> str:
    """What the runner prints once it serves: URI, version, fast path, address, workers."""
    workers = f" with {args.workers} workers" if args.workers > 1 else ""
    return (
        f"serving {args.model_uri} (version {model.get('version')}, fast path "
        f"{'on' if model.get('fast_path') else 'off'}) on http://{args.host}:{args.port}{workers}"
    )


def open_client() -> Any:
    """An MlflowClient on training's store (MLFLOW_TRACKING_URI, else the embedded one)."""
    import mlflow

    from mlstack.settings import get_settings
    from mlstack.tracking import configure_tracking

    configure_tracking(get_settings())
    return mlflow.MlflowClient()


def usage_error(model_uri: str, exc: Any) -> UsageError | None:
    """The UsageError for an MlflowException saying the model or version does not exist."""
    if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
        return None
    return UsageError(
        f"cannot load {model_uri}: {exc.message.splitlines()[0]}; check the name and "
        "alias/version (and MLFLOW_TRACKING_URI)"
    )


def load_checked(model_uri: str, client: Any, version: str | None = None) -> ServedModel:
    """load_model, with a model or version that does not exist turned into a UsageError."""
    from mlflow.exceptions import MlflowException

    try:
        return load_model(model_uri, client, version)
    except MlflowException as exc:
        error = usage_error(model_uri, exc)
        if error is None:
            raise
        raise error from exc


def check_follow(args: argparse.Namespace) -> None:
    """--follow-alias only makes sense for models:/NAME@ALIAS."""
    match = MODEL_URI.match(args.model_uri)
    if args.follow_alias and not (match and match["alias"]):
        raise UsageError("--follow-alias needs a models:/NAME@ALIAS model URI")


def make_app(
    args: argparse.Namespace, model: ServedModel, client: Any, *, link: Any = None, worker: int = 0
) -> Any:
    """The ASGI app for `model` with the runner's options. A worker among several (`link` set)
    leaves following the alias to the supervisor."""
    from mlstack.serving.app import create_app
    from mlstack.serving.model import resolve_version
    from mlstack.serving.predlog import DirectorySink, MlflowRunSink, PredictionLog

    follow = args.follow_alias if link is None else 0.0
    return create_app(
        model,
        lambda: load_model(args.model_uri, client),
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        follow_every_s=follow,
        latest_version=(lambda: resolve_version(args.model_uri, client)) if follow else None,
        predlog=(
            PredictionLog(
                MlflowRunSink(client, args.prediction_run_id)
                if args.prediction_run_id
                else DirectorySink(Path(args.log_predictions)),
                batch_size=args.log_batch,
                flush_every_s=args.log_flush_s,
            )
            if args.log_predictions
            else None
        ),
        link=link,
        worker=worker,
    )


def prediction_experiment(args: argparse.Namespace) -> str | None:
    """The experiment of `--log-predictions mlflow[:EXPERIMENT]` (None for a directory)."""
    dest = args.log_predictions or ""
    if dest != "mlflow" and not dest.startswith("mlflow:"):
        return None
    if dest.startswith("mlflow:") and dest[len("mlflow:") :]:
        return dest[len("mlflow:") :]
    match = MODEL_URI.match(args.model_uri)
    return f"{match['name']}-predictions" if match else "predictions"


@contextlib.contextmanager
def prediction_run(args: argparse.Namespace, client: Any) -> Iterator[None]:
    """With `--log-predictions mlflow`: the server's prediction-log run, open while it serves
    (args.prediction_run_id), FINISHED after a clean stop and FAILED otherwise."""
    from mlstack.serving.predlog import open_prediction_run

    args.prediction_run_id = None
    experiment = prediction_experiment(args)
    if experiment is None:
        yield
        return
    args.prediction_run_id = open_prediction_run(client, args.model_uri, experiment)
    print(  # noqa: T201 (the runner's own output)
        f"logging predictions to run {args.prediction_run_id} (experiment {experiment})",
        flush=True,
    )
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    finally:
        client.set_terminated(args.prediction_run_id, status)


def run_uvicorn(app: Any, sock: socket.socket) -> None:
    """Serve `app` on the already bound `sock` until SIGINT/SIGTERM (then a graceful stop)."""
    import uvicorn

    # After its graceful stop uvicorn raises the stopping signal again; under the default
    # handlers that kills the process before the caller's cleanup (ending the prediction-log
    # run) runs. By then the signal has done its work, so it is answered with nothing.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def serve_one(args: argparse.Namespace) -> int:
    """--workers 1: load the model and serve it in this process."""
    check_follow(args)
    (sock,) = bind_sockets(args.host, args.port)
    client = open_client()
    model = load_checked(args.model_uri, client)
    with prediction_run(args, client):
        app = make_app(args, model, client)
        print(serving_line(args, model.describe()), flush=True)  # noqa: T201 (its own output)
        run_uvicorn(app, sock)
    return 0
