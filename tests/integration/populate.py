"""Fill a tracking server the way a team does, for the backup tests and `make bench-backup`:
experiments of runs with params, metric histories, tags and file artifacts, and writers that
keep logging (and say what the server acknowledged, and when) while something else happens.

Runs are logged through the tracking server only (MlflowClient on MLFLOW_TRACKING_URI), so
artifacts go through its proxy into the bucket, as a client's do.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

METRIC_STEPS = 10


def log_runs(
    tracking_uri: str,
    experiments: int,
    runs_per_experiment: int,
    prefix: str = "bk",
    artifact_kb: int = 4,
) -> list[str]:
    """`experiments` x `runs_per_experiment` finished runs (3 params, 2 metrics of
    METRIC_STEPS steps, 2 tags, one text artifact of about `artifact_kb` KB and one JSON);
    their run ids."""
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    run_ids = []
    filler = "x" * 1000
    for e in range(experiments):
        exp_id = client.create_experiment(f"{prefix}-exp-{e}", tags={"team": "bk", "e": str(e)})
        for r in range(runs_per_experiment):
            run = client.create_run(exp_id, run_name=f"{prefix}-{e}-{r}", tags={"kind": "bulk"})
            rid = run.info.run_id
            now = int(time.time() * 1000)
            metrics = [
                Metric(key, value=(r + 1) / (s + 1) + i, timestamp=now + s, step=s)
                for i, key in enumerate(("rmse", "loss"))
                for s in range(METRIC_STEPS)
            ]
            params = [Param("alpha", str(r / 10)), Param("l1_ratio", "0.5"), Param("e", str(e))]
            client.log_batch(rid, metrics=metrics, params=params, tags=[RunTag("r", str(r))])
            client.log_text(rid, f"run {rid}\n" + filler * artifact_kb, "notes/readme.txt")
            client.log_dict(rid, {"run": rid, "e": e, "r": r}, "summary.json")
            client.set_terminated(rid)
            run_ids.append(rid)
    return run_ids


@dataclass
class Ack:
    """One write the server acknowledged: a run (created, logged, artifact stored, finished)."""

    run_id: str
    steps: int
    at: float  # time.time() when the last of its requests came back


@dataclass
class Writers:
    """`count` threads logging runs into experiment `experiment` until stopped; every
    acknowledged run is kept with the time its last write returned."""

    tracking_uri: str
    count: int = 4
    experiment: str = "bk-writers"
    acks: list[Ack] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        client = MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)
        found = client.get_experiment_by_name(self.experiment)
        self.experiment_id = (
            found.experiment_id if found else client.create_experiment(self.experiment)
        )
        self._threads = [
            threading.Thread(target=self._write, args=(i,), daemon=True) for i in range(self.count)
        ]

    def start(self) -> Writers:
        """Start the threads; returns self."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop and join the threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _write(self, worker: int) -> None:
        client = MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)
        n = 0
        while not self._stop.is_set():
            try:
                run = client.create_run(self.experiment_id, run_name=f"w{worker}-{n}")
                rid = run.info.run_id
                for step in range(3):
                    client.log_metric(rid, "progress", step / 3, step=step)
                client.log_text(rid, f"writer {worker} run {n}", "out.txt")
                client.set_terminated(rid)
                with self._lock:
                    self.acks.append(Ack(rid, 3, time.time()))
            except Exception as exc:  # kept and asserted on by the test, never lost
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                time.sleep(0.2)
            n += 1
