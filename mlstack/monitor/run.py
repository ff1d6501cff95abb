"""One monitoring check: the serving version's window of the prediction log against that
version's reference, logged as a run in experiment `<model>-monitoring`.

Everything a user can get wrong is checked before the run starts, so bad input writes
nothing. The run holds the Evidently report (report.html, report.json), the share of drifted
columns, each column's score and p-value, the prediction drift, live performance when labels
are given, and tags naming the model version, the window and the log.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mlstack.monitor.drift import ColumnDrift, DriftResult, compare
from mlstack.monitor.profiles import LABEL
from mlstack.monitor.reference import KIND_TAG, load_reference
from mlstack.monitor.window import (
    attach_labels,
    find_log,
    read_labels,
    read_log,
    select,
    serving_version,
)
from mlstack.settings import Settings, get_settings

EXIT_NO_DRIFT = 0
EXIT_DRIFT = 3  # 1 and 2 already mean "failed" and "bad input" for every mlstack command
MONITORING_KIND = "monitoring"


@dataclass(frozen=True)
class MonitorResult:
    """What one check found and where it is recorded."""

    model: str
    version: str
    drift: bool
    share: float
    drift_share: float
    drifted: int
    columns: int
    worst: list[ColumnDrift]
    prediction: ColumnDrift
    rows: int
    run_id: str
    experiment_id: str
    link: str
    performance: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        """One line for people: drift yes/no, share, the worst columns, where the report is."""
        worst = ", ".join(f"{c.column} {c.score:.2f}" for c in self.worst)
        live = "".join(f"; {k} {v:.4f}" for k, v in self.performance.items())
        return (
            f"drift: {'yes' if self.drift else 'no'} ({self.drifted}/{self.columns} columns "
            f"= {self.share:.2f}, threshold {self.drift_share:.2f}; worst: {worst}; prediction "
            f"p={self.prediction.p_value:.3g}) for {self.model} v{self.version} on {self.rows} "
            f"rows{live}; report: {self.link} (report.html)"
        )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def monitor(
    model: str | None = None,
    *,
    log: str | None = None,
    since: float | None = None,
    last: int | None = None,
    labels: Path | None = None,
    settings: Settings | None = None,
    tags: dict[str, str] | None = None,
) -> MonitorResult:
    """Check the prediction log of `model` (or the log `log`: a run id or a directory) for
    drift against the serving version's reference, and log the check.

    Returns:
        The finding and the monitoring run that records it.

    Raises:
        UsageError: no or empty log, another model's log, too few rows in the window, no
            reference for the serving version, labels with ids the log does not have.
    """
    import mlflow

    from mlstack import tracking

    settings = settings or get_settings()
    tracking.configure_tracking(settings)
    client = mlflow.MlflowClient()
    source = find_log(client, model, log)
    records = read_log(source, client)
    name, version = serving_version(records, model, source)
    reference = load_reference(client, name, version)
    profile = reference.profile
    window = select(records, version, profile, since=since, last=last)
    labelled = None
    if labels is not None:
        labelled = attach_labels(window.rows, read_labels(labels, records))

    drift = compare(reference.frame, window.rows, profile)
    performance: dict[str, float] = {}
    if labelled is not None and len(labelled):
        performance[f"live_{profile.performance_metric}"] = profile.performance(
            labelled[LABEL], labelled
        )
        if reference.heldout is not None:
            performance[f"heldout_{profile.heldout_metric}"] = float(reference.heldout)

    run_tags = {
        "mlstack.kind": MONITORING_KIND,
        "mlstack.model_name": name,
        "mlstack.model_version": version,
        KIND_TAG: profile.kind,
        "mlstack.reference_run_id": reference.run_id,
        "mlstack.prediction_log": source.run_id or source.location,
        "mlstack.window": f"{_iso(window.since)} .. {_iso(window.until)}",
        "mlstack.drift": "yes" if drift.drift else "no",
        **(tags or {}),
    }
    run_name = f"{name}-v{version}-{time.strftime('%Y%m%dT%H%M%S')}"
    with tracking.tracked_run(
        f"{name}-monitoring", settings, entry_point="monitor", run_name=run_name
    ) as run:
        mlflow.set_tags(run_tags)
        mlflow.log_metrics(_metrics(drift, window.rows.shape[0], window.requests, performance))
        if labelled is not None:
            mlflow.log_metric("labelled_rows", len(labelled))
        with tempfile.TemporaryDirectory(prefix="mlstack-monitor-") as tmp:
            for path in drift.save(Path(tmp)):
                mlflow.log_artifact(str(path))
    prediction = drift.columns[drift.prediction]
    return MonitorResult(
        model=name,
        version=version,
        drift=drift.drift,
        share=drift.share,
        drift_share=drift.drift_share,
        drifted=sum(c.drifted for c in drift.columns.values()),
        columns=len(drift.columns),
        worst=drift.worst(),
        prediction=prediction,
        rows=len(window.rows),
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        link=tracking.run_link(settings, run.info.experiment_id, run.info.run_id),
        performance=performance,
    )


def _metrics(
    drift: DriftResult, rows: int, requests: int, performance: dict[str, float]
) -> dict[str, float]:
    prediction = drift.columns[drift.prediction]
    metrics = {
        "drift": float(drift.drift),
        "share_drifted_columns": drift.share,
        "drifted_columns": float(sum(c.drifted for c in drift.columns.values())),
        "rows": float(rows),
        "requests": float(requests),
        "prediction_drift_score": prediction.score,
        "prediction_drift_p_value": prediction.p_value,
    }
    for column in drift.columns.values():
        metrics[f"drift_score.{column.column}"] = column.score
        metrics[f"drift_p_value.{column.column}"] = column.p_value
    return metrics | performance
