"""The supervisor: binds the port (one SO_REUSEPORT socket per worker, see sockets.py), starts
N worker processes (worker.py) with the `spawn` method, and is the one place that changes what
they serve. It talks to each worker over a pipe:

- Reload (POST /reload on any worker, or --follow-alias, checked here every SECONDS) is two
  phases, so all workers change version together or none does: the supervisor resolves the
  version once, every worker loads it and keeps it aside ("prepare"); only when all have it
  does each swap it in ("commit"), else each drops it ("abort") and the old one keeps serving.
  /reload answers after the last worker swapped.
- GET /metrics on any worker asks the supervisor, which renders every worker's counts summed
  (prometheus_client's multiprocess files, in a directory private to this server start) with
  its own: reloads, the model, live workers.
- A worker that dies is started again on the version being served.
- SIGTERM/SIGINT: each worker stops gracefully (in-flight requests, prediction log flushed).

With one worker it is the same: one supervisor, one worker process.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import queue
import signal
import socket
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlstack.errors import UsageError
from mlstack.polling import poll_until
from mlstack.serving.metrics import metrics_dir, render_server, worker_gone
from mlstack.serving.model import user_errors
from mlstack.serving.options import PROG, ServeOptions
from mlstack.serving.sockets import bind_again, bind_sockets
from mlstack.serving.worker import reason, worker_main

log = logging.getLogger(__name__)

# A reload (every worker loading the new version) may take this long before it is abandoned.
RELOAD_TIMEOUT_S = 600.0
# A worker dying more often than this stops the server rather than crash-looping.
MAX_RESTARTS, RESTART_WINDOW_S = 5, 60.0
STOP_GRACE_S = 30.0


class WorkerStartError(Exception):
    """A worker could not load the model at start (not the user's input: exit 1)."""


@dataclass
class _Worker:
    process: Any
    conn: Any
    ready: bool = False
    closed: bool = False  # its pipe reached EOF (the "exited" message is queued)


class Supervisor:
    """Starts, watches and coordinates the workers (see the module docstring)."""

    def __init__(
        self,
        options: ServeOptions,
        sockets: list[socket.socket],
        client: Any,
        metrics: Path,
    ) -> None:
        from mlstack.serving.model import resolve_version

        self.options = options
        self.sockets = sockets
        self.client = client
        self.metrics = metrics  # the workers' multiprocess metric files (metrics.metrics_dir)
        self.prediction_run_id: str | None = None  # set by start()
        self._resolve = lambda: resolve_version(options.model_uri, client)
        with user_errors(options.model_uri):
            self.version = self._resolve()  # every worker loads this very version
        self.model: dict[str, Any] = {}
        self.reloads: Counter[str] = Counter()
        self.reports: list[dict[str, Any]] = []  # stopped workers' prediction logs (unsent_note)
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
            args=(
                self.options,
                index,
                self.sockets[index],
                child,
                self.version,
                self.prediction_run_id,
            ),
            name=f"mlstack-serving-worker-{index}",
        )
        process.start()
        child.close()
        worker = self.workers[index] = _Worker(process, parent)
        threading.Thread(target=self._read, args=(index, worker), daemon=True).start()

    def _read(self, index: int, worker: _Worker) -> None:
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                worker.closed = True
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
    def start(self, prediction_run_id: str | None = None) -> bool:
        """Start every worker (logging predictions to that run, if any) and wait until all
        serve (False: stopped by a signal meanwhile, a clean stop too); a worker that cannot
        load the model stops them all (a UsageError for a model that does not exist)."""
        self.prediction_run_id = prediction_run_id
        for index in range(self.options.workers):
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
        follow = self.options.follow_alias_s
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
            worker_gone(self.metrics, worker.process.pid)
        self._collect_reports()

    def _collect_reports(self) -> None:
        """After the stop: each worker's prediction-log report, sent before its pipe closed."""
        # The workers have exited: their pipes reach EOF at once, after everything they sent.
        poll_until(
            lambda: None if all(w.closed for w in self.workers.values()) else "pipes open",
            5.0,
            interval_s=0.05,
        )
        while (item := self._next(0)) is not None:
            if item[1][0] == "stopped":
                self.reports.append(item[1][1])

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
        worker_gone(self.metrics, self.workers[index].process.pid)
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
        # A worker still starting answers once it serves: it must end on the new version too.
        waiting = set(self.workers)
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
            prepared = {-1: (False, reason(exc))}
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
        log.info("reloaded %s: version %s -> %s on %d workers", self.options.model_uri,
                 previous.get("version"), version, len(committed))  # fmt: skip
        return 200, {"reloaded": True, "previous": previous, "serving": self.model,
                     "workers": len(committed)}  # fmt: skip

    def _metrics(self) -> tuple[int, str]:
        # Every worker's counts are in the files, a dead one's included (counters never drop).
        live = sum(w.ready and w.process.is_alive() for w in self.workers.values())
        return 200, render_server(self.metrics, self.model, live, self.reloads)

    def _follow(self) -> None:
        try:
            latest = self._resolve()
        except Exception as exc:  # the registry may be briefly away: try again next time
            log.warning("could not check the alias: %s", reason(exc))
            return
        if latest is not None and latest != self.version:
            self._reload()


def serving_line(options: ServeOptions, model: dict[str, Any]) -> str:
    """What the server prints once it serves: URI, version, fast path, address, workers."""
    workers = f" with {options.workers} workers" if options.workers > 1 else ""
    return (
        f"serving {options.model_uri} (version {model.get('version')}, fast path "
        f"{'on' if model.get('fast_path') else 'off'}) on "
        f"http://{options.host}:{options.port}{workers}"
    )


def unsent_note(reports: list[dict[str, Any]]) -> str:
    """What the exit line adds about the prediction log: records the workers still held at the
    stop and where they went ("" when no worker reported)."""
    if not reports:
        return ""
    spilled = sum(r["spilled"] for r in reports)
    lost = sum(r["lost"] for r in reports)
    if not spilled and not lost:
        return "; no predictions were left unsent"
    dirs = sorted({r["spill_dir"] for r in reports if r["spilled"]})
    note = f"; {spilled} queued predictions kept in {', '.join(dirs)}" if spilled else ""
    return note + (f"; {lost} queued predictions lost (spill directory unwritable)" if lost else "")


def serve(options: ServeOptions) -> int:
    """Bind, check the model exists, start the workers, coordinate them until a signal.

    Returns the exit code: 0 after a clean stop, 1 when a worker could not start or the
    tracking server failed (one line, saying what became of queued predictions).
    """
    from mlflow.exceptions import MlflowException

    from mlstack.serving.model import open_client
    from mlstack.serving.predlog import prediction_run
    from mlstack.tracking import describe_server_error

    options.check()
    sockets = bind_sockets(options.host, options.port, options.workers)
    with metrics_dir() as metrics:
        supervisor = Supervisor(options, sockets, open_client(), metrics)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, supervisor.request_stop)
        try:
            # Opened before the workers start, since they log to it; FAILED unless a clean stop.
            with prediction_run(supervisor.client, options) as run_id:
                if not supervisor.start(run_id):
                    return 0  # stopped (SIGTERM/SIGINT) before every worker was up
                print(serving_line(options, supervisor.model), flush=True)  # noqa: T201
                supervisor.run()
        except WorkerStartError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)  # noqa: T201
            return 1
        except MlflowException as exc:  # the tracking server went away (after MLflow's retries)
            note = unsent_note(supervisor.reports)
            print(f"{PROG}: error: {describe_server_error(exc)}{note}", file=sys.stderr)  # noqa: T201
            return 1
    return 0
