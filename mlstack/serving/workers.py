"""`--workers N`: one supervisor process and N worker processes serving one port.

The supervisor binds the port, one SO_REUSEPORT socket per worker (see runner.bind_sockets
for why it binds them itself rather than leaving it to uvicorn), starts N workers with the
`spawn` method (each loads the model and accepts on its socket) and talks to each over a pipe:

- Reload (POST /reload on any worker, or the supervisor's own --follow-alias timer) is two
  phases, so all workers change version together or none does: the supervisor resolves the
  version once, every worker loads it and keeps it aside ("prepare"); only when all have it
  does each swap it in ("commit"), else each drops it ("abort") and the old one keeps serving.
  /reload answers after the last worker swapped.
- GET /metrics on any worker returns every worker's counts summed ("snapshot").
- A worker that dies is started again on the version being served.
- SIGTERM/SIGINT: each worker stops gracefully (in-flight requests, prediction log flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlstack.errors import UsageError
from mlstack.serving.metrics import Metrics
from mlstack.serving.model import ServedModel
from mlstack.serving.runner import bind_again

log = logging.getLogger(__name__)

# A reload (every worker loading the new version) may take this long before it is abandoned.
RELOAD_TIMEOUT_S = 600.0
SNAPSHOT_TIMEOUT_S = 10.0
# A worker dying more often than this stops the server rather than crash-looping.
MAX_RESTARTS, RESTART_WINDOW_S = 5, 60.0
STOP_GRACE_S = 30.0


class WorkerStartError(Exception):
    """A worker could not load the model at start (not the user's input: exit 1)."""


def _reason(exc: BaseException) -> str:
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
                reply = (False, _reason(exc))
        elif kind == "commit":
            if self._staged is not None:
                state.model, self._staged = self._staged, None  # one assignment: atomic
            reply = (True, state.model.describe())
        elif kind == "abort":
            self._staged = None
            reply = (True, None)
        elif kind == "snapshot":
            reply = (True, state.metrics.snapshot())
        else:
            reply = (False, f"unknown command {kind!r}")
        self.send("reply", op, reply)


@dataclass
class _Worker:
    process: Any
    conn: Any
    ready: bool = False


class Supervisor:
    """Starts, watches and coordinates the workers (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, sockets: list[socket.socket], client: Any) -> None:
        from mlstack.serving.model import resolve_version

        self.args = args
        self.sockets = sockets
        self._resolve = lambda: resolve_version(args.model_uri, client)
        self.version = self._resolve()  # every worker loads this very version
        self.model: dict[str, Any] = {}
        self.reloads: Counter[str] = Counter()
        self.workers: dict[int, _Worker] = {}
        self._inbox: queue.Queue[tuple[int, tuple]] = queue.Queue()
        self._deferred: deque[tuple[int, tuple]] = deque()
        self._ops = itertools.count(1)
        self._restarts: deque[float] = deque()
        self._stopping = threading.Event()
        self._context = multiprocessing.get_context("spawn")  # TensorFlow and fork do not mix

    # -- processes -----------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=worker_main,
            args=(self.args, index, self.sockets[index], child, self.version),
            name=f"mlstack-serving-worker-{index}",
        )
        process.start()
        child.close()
        self.workers[index] = _Worker(process, parent)
        threading.Thread(target=self._read, args=(index, parent), daemon=True).start()

    def _read(self, index: int, conn: Any) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._inbox.put((index, ("exited",)))
                return
            self._inbox.put((index, message))

    def _send(self, index: int, *message: Any) -> None:
        worker = self.workers.get(index)
        if worker is None:
            return
        try:
            worker.conn.send(message)
        except OSError:
            pass  # it is exiting; its "exited" message is on the way

    def _next(self, timeout: float) -> tuple[int, tuple] | None:
        if self._deferred:
            return self._deferred.popleft()
        try:
            return self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> bool:
        """Start every worker and wait until all serve (False: stopped by a signal meanwhile,
        a clean stop too); a worker that cannot load the model stops them all (a UsageError
        for a model that does not exist)."""
        for index in range(self.args.workers):
            self._spawn(index)
        later: list[tuple[int, tuple]] = []  # requests to workers already up: after the start
        while not all(w.ready for w in self.workers.values()):
            if self._stopping.is_set():
                self.stop()
                return False
            try:
                index, message = self._inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if message[0] == "ready":
                self.workers[index].ready = True
                self.model = message[1]
            elif message[0] in ("failed", "exited"):
                self.stop()
                if message[0] == "failed" and message[2]:
                    raise UsageError(message[1])
                reason = message[1] if message[0] == "failed" else "it exited while loading"
                raise WorkerStartError(f"worker {index} could not start: {reason}")
            else:
                later.append((index, message))
        self._deferred.extend(later)
        return True

    def run(self) -> None:
        """Coordinate until SIGTERM/SIGINT, then stop every worker."""
        follow = self.args.follow_alias
        next_check = time.monotonic() + follow
        while not self._stopping.is_set():
            item = self._next(0.2)
            if item is not None:
                self._handle(*item)
            if follow and time.monotonic() >= next_check:
                self._follow()
                next_check = time.monotonic() + follow
        self.stop()

    def request_stop(self, *_: Any) -> None:
        """Signal handler: stop at the next turn of the loop."""
        self._stopping.set()

    def stop(self) -> None:
        """SIGTERM every worker (uvicorn's graceful stop), wait, then kill what is left."""
        self._stopping.set()
        for worker in self.workers.values():
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in self.workers.values():
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error(
                    "worker %s did not stop in %.0f s; killing it",
                    worker.process.name,
                    STOP_GRACE_S,
                )
                worker.process.kill()
                worker.process.join()

    # -- messages ------------------------------------------------------------------------
    def _handle(self, index: int, message: tuple) -> None:
        kind = message[0]
        if kind == "ask":
            _, op, what = message
            answer = self._reload() if what == "reload" else self._metrics()
            self._send(index, "answer", op, answer)
        elif kind == "ready":
            self.workers[index].ready = True
            log.info("worker %d ready (version %s)", index, message[1].get("version"))
        elif kind == "failed":
            log.error("worker %d could not load the model: %s", index, message[1])
        elif kind == "exited":
            self._restart(index)
        # A "reply" here belongs to a broadcast that already timed out: nothing waits for it.

    def _restart(self, index: int) -> None:
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] < now - RESTART_WINDOW_S:
            self._restarts.popleft()
        self.workers[index].process.join(5)
        code = self.workers[index].process.exitcode
        if len(self._restarts) > MAX_RESTARTS:
            log.error(
                "workers died %d times in %.0f s; stopping", len(self._restarts), RESTART_WINDOW_S
            )
            self._stopping.set()
            return
        log.warning("worker %d exited (code %s); starting it again", index, code)
        # Its socket still listens (this process holds it too) and would queue new connections
        # until the new worker is up; a fresh one, listening only once that worker serves,
        # leaves them to the others meanwhile (the dead one's queue is reset).
        old = self.sockets[index]
        self.sockets[index] = bind_again(old)
        old.close()
        self._spawn(index)

    def _broadcast(self, kind: str, payload: Any, timeout: float) -> dict[int, tuple[bool, Any]]:
        """Send a command to every worker; their replies, (False, why) for any that had none."""
        op = next(self._ops)
        # A worker still starting answers once it serves: worth waiting for in a reload (it
        # must end on the new version), not for a metrics snapshot (it has counted nothing).
        waiting = {i for i, w in self.workers.items() if w.ready or kind != "snapshot"}
        for index in waiting:
            self._send(index, kind, op, payload)
        replies: dict[int, tuple[bool, Any]] = {}
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline and not self._stopping.is_set():
            try:
                index, message = self._inbox.get(timeout=min(0.5, deadline - time.monotonic()))
            except queue.Empty:
                continue
            if message[0] == "reply" and message[1] == op:
                replies[index] = message[2]
                waiting.discard(index)
            else:  # handled after this broadcast (an "exited" also ends the wait for that one)
                self._deferred.append((index, message))
                if message[0] == "exited" and index in waiting:
                    replies[index] = (False, f"worker {index} exited")
                    waiting.discard(index)
        for index in waiting:
            replies[index] = (False, f"worker {index} did not answer {kind} in {timeout:.0f} s")
        return replies

    def _reload(self) -> tuple[int, dict[str, Any]]:
        previous = self.model
        try:
            version = self._resolve()
            prepared = self._broadcast("prepare", version, RELOAD_TIMEOUT_S)
        except Exception as exc:  # the registry may be away: keep serving, say why
            prepared = {-1: (False, _reason(exc))}
        failures = [why for ok, why in prepared.values() if not ok]
        if failures:
            self._broadcast("abort", None, RELOAD_TIMEOUT_S)
            self.reloads["failed"] += 1
            log.warning(
                "reload failed, still serving version %s: %s", previous.get("version"), failures[0]
            )
            return 500, {"reloaded": False, "error": failures[0], "serving": previous}
        committed = self._broadcast("commit", None, RELOAD_TIMEOUT_S)
        self.version = version
        self.model = next(iter(committed.values()))[1]
        self.reloads["ok"] += 1
        log.info("reloaded %s: version %s -> %s on %d workers", self.args.model_uri,
                 previous.get("version"), version, len(committed))  # fmt: skip
        return 200, {"reloaded": True, "previous": previous, "serving": self.model,
                     "workers": len(committed)}  # fmt: skip

    def _metrics(self) -> tuple[int, str]:
        replies = self._broadcast("snapshot", None, SNAPSHOT_TIMEOUT_S)
        snapshots = [snap for ok, snap in replies.values() if ok]
        total = Metrics.merged(snapshots)
        total.reloads = Counter(self.reloads)  # reloads are the supervisor's, not per worker
        return 200, total.render(self.model, workers=len(snapshots))

    def _follow(self) -> None:
        try:
            latest = self._resolve()
        except Exception as exc:  # the registry may be briefly away: try again next time
            log.warning("could not check the alias: %s", _reason(exc))
            return
        if latest is not None and latest != self.version:
            self._reload()


def worker_main(
    args: argparse.Namespace, index: int, sock: socket.socket, conn: Any, version: str | None
) -> None:
    """One worker process: load `version` of the model, tell the supervisor, serve `sock`."""
    from mlstack.serving.model import load_model
    from mlstack.serving.runner import load_checked, make_app, open_client, run_uvicorn

    # Out of the terminal's process group: Ctrl-C reaches the supervisor only, which then stops
    # each worker once (a second signal would make uvicorn skip its graceful stop).
    os.setpgrp()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    client = open_client()
    try:
        model = load_checked(args.model_uri, client, version)
    except UsageError as exc:
        conn.send(("failed", str(exc), True))
        return
    except Exception as exc:
        conn.send(("failed", _reason(exc), False))
        return
    link = WorkerLink(conn, index, lambda pinned: load_model(args.model_uri, client, pinned))
    app = make_app(args, model, client, link=link, worker=index)
    link.send("ready", model.describe())
    run_uvicorn(app, sock)


def serve_many(args: argparse.Namespace) -> int:
    """--workers N: bind, check the model exists, start the workers, coordinate them."""
    from mlflow.exceptions import MlflowException

    from mlstack.serving.runner import (
        bind_sockets,
        check_follow,
        open_client,
        prediction_run,
        serving_line,
        usage_error,
    )

    check_follow(args)
    sockets = bind_sockets(args.host, args.port, args.workers)
    client = open_client()
    try:
        supervisor = Supervisor(args, sockets, client)
    except MlflowException as exc:
        error = usage_error(args.model_uri, exc)
        if error is None:
            raise
        raise error from exc
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, supervisor.request_stop)
    try:
        with prediction_run(args, client):  # before the workers start: they log to this run
            if not supervisor.start():
                return 0  # stopped (SIGTERM/SIGINT) before every worker was up
            print(serving_line(args, supervisor.model), flush=True)  # noqa: T201
            supervisor.run()
    except WorkerStartError as exc:
        print(f"python -m mlstack.serving: error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
