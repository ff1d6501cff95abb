"""The prediction log: every answered request, written off the request path as Parquet files.

Each record: request id, time, model name/version/run id, content type, the request body and the
response body, and the row count. A background thread writes batches (`--log-batch` records or
every `--log-flush-s` seconds) to `predictions-<time>-<pid>-<seq>.parquet` in the log directory,
through a temporary name and an atomic rename, so a reader (the drift job) never sees half a
file. Memory is bounded: when the queue is full the server answers 503 instead of predicting,
so no answered request goes unrecorded. A clean stop writes what is queued before exiting.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_FIELDS = (
    "request_id",
    "timestamp",
    "model_name",
    "model_version",
    "run_id",
    "content_type",
    "request",
    "response",
    "rows",
)


@dataclass(frozen=True)
class Record:
    """One answered request."""

    request_id: str
    timestamp: float
    model_name: str | None
    model_version: str | None
    run_id: str | None
    content_type: str
    request: str
    response: str
    rows: int


class PredictionLog:
    """A bounded queue drained by one writer thread into Parquet files under `directory`."""

    def __init__(
        self,
        directory: Path,
        *,
        batch_size: int = 1000,
        flush_every_s: float = 5.0,
        max_queued: int = 50_000,
    ) -> None:
        self.directory = directory
        self.batch_size = batch_size
        self.flush_every_s = flush_every_s
        self._queue: queue.Queue[Record] = queue.Queue(maxsize=max_queued)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self.written = 0
        self.files = 0

    def start(self) -> None:
        """Create the directory and start the writer."""
        self.directory.mkdir(parents=True, exist_ok=True)
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
                    log.error("prediction log: %d records could not be written", len(batch))
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + self.flush_every_s
            if stopping:
                return

    def _write(self, batch: list[Record]) -> bool:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {name: [getattr(r, name) for r in batch] for name in SCHEMA_FIELDS}
        table = pa.table(columns)
        self._seq += 1
        name = f"predictions-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{self._seq:06d}"
        tmp = self.directory / f".{name}.parquet.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, self.directory / f"{name}.parquet")
        except OSError as exc:
            log.error("prediction log: %d records not written yet: %s", len(batch), exc)
            return False
        self.written += len(batch)
        self.files += 1
        return True
