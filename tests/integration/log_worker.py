"""One concurrent client for the load test: a run with N metric points and one artifact.

    python -m tests.integration.log_worker EXPERIMENT_ID WORKER_INDEX POINTS
Prints "RUN_ID <id>". Uses only MLFLOW_TRACKING_URI from the environment.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric

BATCH = 100  # metric points per log_batch call (MLflow accepts up to 1000)


def main(experiment_id: str, worker: int, points: int) -> None:
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id, run_name=f"worker-{worker}")
    now = int(time.time() * 1000)
    metrics = [Metric("load", float(worker * points + i), now, i) for i in range(points)]
    for start in range(0, points, BATCH):
        client.log_batch(run.info.run_id, metrics=metrics[start : start + BATCH])
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / f"worker-{worker}.txt"
        artifact.write_text(f"worker {worker}\n" * 100)
        client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)
    print(f"RUN_ID {run.info.run_id}")  # MLflow prints its own lines on stdout too


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
