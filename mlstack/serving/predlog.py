"""The prediction log's writer: every answered request, written off the request path as Parquet
files.

Each record (mlstack.logstore.Record, which also reads logs back and names their experiments
and tags): request id, time, model name/version/run id, content type, the request body and the
response body, and the row count. A background thread writes batches (`--log-batch` records or
every `--log-flush-s` seconds) as `predictions-<time>-<pid>-<seq>.parquet` to a sink:

- `DirectorySink`: a directory (a volume), through a temporary name and an atomic rename, so a
  reader never sees half a file;
- `MlflowRunSink` (`--log-predictions mlflow`): artifacts of one MLflow run per server, under
  `predictions/`, in experiment `<model>-predictions`. Through a tracking server they land in
  the stack's S3 bucket via the server's artifact proxy, so the serving process holds no S3
  keys. `prediction_run` opens that run and ends it FINISHED after a clean stop.

Memory is bounded: when the queue is full the server answers 503 instead of predicting, so no
answered request goes unrecorded. A clean stop writes what is queued; a batch the sink still
refuses then is written to a local spill directory instead, and its path logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlstack import logstore
from mlstack.logstore import Record, frame_of, write_parquet

# Readers import it from mlstack.logstore; this re-export keeps older importers working
# (tests/integration/test_model_serving.py, tests/docker/test_compose_stack.py,
# benchmarks/monitoring.py) until they move.

if TYPE_CHECKING:
    import pandas as pd

    from mlstack.serving.options import ServeOptions

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where batches go."""

    def open(self) -> None:
        """Prepare to write (create the directory, ...)."""

    def write(self, name: str, frame: pd.DataFrame) -> None:
        """Store one batch as `name`.parquet, whole or not at all."""


class DirectorySink:
    """Parquet files in a local directory (or a mounted volume)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open(self) -> None:
        """Create the directory."""
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, frame: pd.DataFrame) -> None:
        """Write through a temporary name, then rename: readers never see half a file."""
        tmp = self.directory / f".{name}.parquet.tmp"
        write_parquet(frame, tmp)
        os.replace(tmp, self.directory / f"{name}.parquet")


class MlflowRunSink:
    """Parquet files as artifacts of one MLflow run, under `predictions/`."""

    ARTIFACT_PATH = logstore.ARTIFACT_PATH

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def open(self) -> None:
        """Nothing to prepare: the run exists (see open_prediction_run)."""

    def write(self, name: str, frame: pd.DataFrame) -> None:
        """Upload the batch (one artifact, visible only once complete)."""
        with tempfile.TemporaryDirectory(prefix="mlstack-predlog-") as tmp:
            path = Path(tmp) / f"{name}.parquet"
            write_parquet(frame, path)
            self.client.log_artifact(self.run_id, str(path), self.ARTIFACT_PATH)


def open_prediction_run(client: Any, model_uri: str, experiment: str) -> str:
    """Start the MLflow run whose artifacts hold this server's prediction log; its id."""
    from mlstack.settings import get_settings
    from mlstack.tracking import experiment_id_for

    experiment_id = experiment_id_for(experiment, get_settings(), client)
    run = client.create_run(
        experiment_id,
        run_name=f"serving-{time.strftime('%Y%m%dT%H%M%S')}",
        tags={logstore.KIND_TAG: logstore.PREDICTION_LOG_KIND, logstore.MODEL_URI_TAG: model_uri},
    )
    return run.info.run_id


@contextlib.contextmanager
def prediction_run(client: Any, options: ServeOptions) -> Iterator[str | None]:
    """With `--log-predictions mlflow[:EXPERIMENT]`: the server's prediction-log run (its id),
    open while the server runs, FINISHED after a clean stop and FAILED otherwise. Yields None
    for any other destination."""
    experiment = options.prediction_experiment
    if experiment is None:
        yield None
        return
    run_id = open_prediction_run(client, options.model_uri, experiment)
    print(  # noqa: T201 (the server's own output)
        f"logging predictions to run {run_id} (experiment {experiment})", flush=True
    )
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status)


class PredictionLog:
    """A bounded queue drained by one writer thread into a Sink."""

    def __init__(
        self,
        sink: Sink | Path,
        *,
        batch_size: int = 1000,
        flush_every_s: float = 5.0,
        max_queued: int = 50_000,
        spill_dir: Path | None = None,
    ) -> None:
        self.sink: Sink = DirectorySink(sink) if isinstance(sink, Path) else sink
        # Where a batch goes when the sink still refuses it at shutdown.
        self.spill_dir = spill_dir or Path(tempfile.gettempdir()) / "mlstack-predictions-unsent"
        self.batch_size = batch_size
        self.flush_every_s = flush_every_s
        self._queue: queue.Queue[Record] = queue.Queue(maxsize=max_queued)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        # Records the sink refused at shutdown: kept in spill_dir, or lost (for the exit line).
        self.spilled = 0
        self.lost = 0

    def start(self) -> None:
        """Open the sink and start the writer."""
        self.sink.open()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def full(self) -> bool:
        """True when one more record would not fit (the server then answers 503)."""
        return self._queue.full()

    def put(self, record: Record) -> None:
        """Queue one record; never blocks (callers check `full` before predicting)."""
        self._queue.put_nowait(record)

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        batch: list[Record] = []
        deadline = time.monotonic() + self.flush_every_s
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                batch.append(self._queue.get(timeout=min(timeout, 0.2)))
            except queue.Empty:
                pass
            stopping = self._stop.is_set()
            if stopping:  # drain whatever is left
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            due = len(batch) >= self.batch_size or time.monotonic() >= deadline or stopping
            if batch and due:
                if self._write(batch):
                    batch = []
                elif not stopping:
                    time.sleep(1)  # keep the batch; the queue fills and the server answers 503
                else:
                    self._spill(batch)
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.flush_every_s
            if stopping:
                return

    def _frame(self, batch: list[Record]) -> pd.DataFrame:
        return frame_of(batch)

    def _name(self) -> str:
        self._seq += 1
        return f"predictions-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{self._seq:06d}"

    def _write(self, batch: list[Record]) -> bool:
        try:
            self.sink.write(self._name(), self._frame(batch))
        except Exception as exc:  # disk full, server away, ...: keep the batch, try again
            log.error("prediction log: %d records not written yet: %s", len(batch), exc)
            return False
        return True

    def _spill(self, batch: list[Record]) -> None:
        """Shutdown, and the sink still refuses: keep the records on local disk instead."""
        spill = DirectorySink(self.spill_dir)
        name = self._name()
        try:
            spill.open()
            spill.write(name, self._frame(batch))
        except Exception as exc:
            log.error("prediction log: %d records lost: %s", len(batch), exc)
            self.lost += len(batch)
            return
        self.spilled += len(batch)
        log.error(
            "prediction log: %d records could not reach the sink; kept in %s",
            len(batch),
            self.spill_dir / f"{name}.parquet",
        )
