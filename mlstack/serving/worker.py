"""One worker process: load the version the supervisor names, serve it on the socket the
supervisor bound, and answer the supervisor's commands (prepare/commit/abort a reload) over a
pipe. Its metrics go to prometheus_client's multiprocess files (metrics.py), which the
supervisor reads."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlstack.errors import UsageError
from mlstack.serving.model import ServedModel
from mlstack.serving.options import ServeOptions

log = logging.getLogger(__name__)


def reason(exc: BaseException) -> str:
    """'<Type>: <first line>' of an exception, for one-line answers and logs."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


class WorkerLink:
    """A worker's end of its pipe to the supervisor (lives on the worker's event loop)."""

    def __init__(self, conn: Any, index: int, load: Callable[[str | None], ServedModel]) -> None:
        self.index = index
        self._conn = conn
        self._load = load
        self._send_lock = threading.Lock()
        self._ops = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()
        self._staged: ServedModel | None = None
        self._state: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def send(self, *message: Any) -> None:
        """Send one message to the supervisor (from any thread)."""
        with self._send_lock:
            self._conn.send(message)

    def start(self, state: Any) -> None:
        """Begin answering the supervisor's commands about `state` (a ServerState)."""
        self._state = state
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._read, name="supervisor-link", daemon=True).start()

    async def ask(self, what: str) -> tuple[int, Any]:
        """Ask the supervisor to do `what` ("reload" or "metrics") for all workers."""
        op = next(self._ops)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[op] = answer
        self.send("ask", op, what)
        return await answer

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                # The supervisor is gone: stop as on SIGTERM (answers finish, the log flushes).
                log.warning("worker %d: supervisor gone, stopping", self.index)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._dispatch, message)

    def _dispatch(self, message: tuple) -> None:
        kind, op, payload = message
        if kind == "answer":
            waiting = self._waiting.pop(op, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(payload)
            return
        task = asyncio.create_task(self._command(kind, op, payload))
        self._tasks.add(task)  # a reference, or the loop may drop the task
        task.add_done_callback(self._tasks.discard)

    async def _command(self, kind: str, op: int, payload: Any) -> None:
        state = self._state
        reply: tuple[bool, Any]
        if kind == "prepare":  # load the version aside; the old one keeps answering meanwhile
            try:
                self._staged = await asyncio.to_thread(self._load, payload)
                reply = (True, self._staged.describe())
            except Exception as exc:  # any failure: this worker votes no
                self._staged = None
                reply = (False, reason(exc))
        elif kind == "commit":
            if self._staged is not None:
                state.model, self._staged = self._staged, None  # one assignment: atomic
            reply = (True, state.model.describe())
        elif kind == "abort":
            self._staged = None
            reply = (True, None)
        else:
            reply = (False, f"unknown command {kind!r}")
        self.send("reply", op, reply)


def prediction_log(options: ServeOptions, client: Any, run_id: str | None) -> Any:
    """The worker's PredictionLog: into the server's MLflow run, or a directory (or None)."""
    from mlstack.serving.predlog import DirectorySink, MlflowRunSink, PredictionLog

    if not options.log_predictions:
        return None
    sink = MlflowRunSink(client, run_id) if run_id else DirectorySink(Path(options.log_predictions))
    return PredictionLog(sink, batch_size=options.log_batch, flush_every_s=options.log_flush_s)


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


def worker_main(
    options: ServeOptions,
    index: int,
    sock: socket.socket,
    conn: Any,
    version: str | None,
    prediction_run_id: str | None,
) -> None:
    """One worker process: load `version` of the model, tell the supervisor, serve `sock`."""
    from mlstack.serving.app import create_app
    from mlstack.serving.model import latest_check, load_model, open_client, user_errors

    # Out of the terminal's process group: Ctrl-C reaches the supervisor only, which then stops
    # each worker once (a second signal would make uvicorn skip its graceful stop).
    os.setpgrp()
    # What `mlflow models serve` sets in its server process (MLflow reads it only from the
    # environment): some flavors parse inputs differently when serving.
    os.environ["_MLFLOW_IS_IN_SERVING_ENVIRONMENT"] = "true"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    client = open_client()
    try:
        with user_errors(options.model_uri):
            model = load_model(options.model_uri, client, version)
    except UsageError as exc:
        conn.send(("failed", str(exc), True))
        return
    except Exception as exc:
        conn.send(("failed", reason(exc), False))
        return
    link = WorkerLink(conn, index, lambda pinned: load_model(options.model_uri, client, pinned))
    predlog = prediction_log(options, client, prediction_run_id)
    app = create_app(
        model,
        max_body_bytes=options.max_body_bytes,
        predlog=predlog,
        control=link,
        worker=index,
        latest_check=lambda served: latest_check(client, served),
        max_batch_rows=options.max_batch_size,
        max_batch_wait_s=options.max_batch_ms / 1000,
    )
    freeze_heap()
    link.send("ready", model.describe())
    run_uvicorn(app, sock)  # returns after the graceful stop: the log is flushed (or spilled)
    if predlog is not None:
        link.send("stopped", spill_report(predlog))


def freeze_heap() -> None:
    """Move everything loaded so far (MLflow, TensorFlow, the model: millions of objects) out
    of the garbage collector's sight. A full collection otherwise walks all of them, a pause
    of a few hundred ms every few thousand requests; what requests allocate is still
    collected."""
    import gc

    gc.collect()
    gc.freeze()


def spill_report(predlog: Any) -> dict[str, Any]:
    """What a stopped worker's prediction log could not hand to its sink: records kept in the
    spill directory, and records lost."""
    return {"spilled": predlog.spilled, "lost": predlog.lost, "spill_dir": str(predlog.spill_dir)}
