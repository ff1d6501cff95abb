"""One monitoring check: the serving version's window of the prediction log against that
version's reference, logged as a run in experiment `<model>-monitoring`.

Everything a user can get wrong is checked before the run starts, so bad input writes
nothing. The run holds the decision and its reasons (tags `mlstack.drift`,
`mlstack.drift_reasons`; drift.json with every finding), every threshold it used (params
`threshold.*`), each column's effect, p-value and importance, the domain classifier's AUC,
the prediction's drift, live performance when labels are given (metrics), Evidently's report
(report.html, report.json), and tags naming the model version, the window and the log.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlstack import logstore
from mlstack.monitor.drift import DriftResult, compare
from mlstack.monitor.profiles import LABEL
from mlstack.monitor.reference import KIND_TAG, Reference, load_reference
from mlstack.monitor.window import (
    LogSource,
    Window,
    attach_labels,
    find_log,
    read_labels,
    read_log,
    select,
    serving_version,
)
from mlstack.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

EXIT_NO_DRIFT = 0
EXIT_DRIFT = 3  # 1 and 2 already mean "failed" and "bad input" for every mlstack command


@dataclass(frozen=True)
class MonitorResult:
    """What one check found and where it is recorded."""

    model: str
    version: str
    drift: bool
    reasons: str  # why, in a few words (mlstack.monitor.rules.Verdict.reasons)
    result: DriftResult
    rows: int
    run_id: str
    experiment_id: str
    link: str
    performance: dict[str, float] = field(default_factory=dict)
    skipped: int = 0  # logged requests in the window's span the profile could not read back

    def line(self) -> str:
        """One line for people: drift yes/no and why, the window (and the requests it could
        not read), live performance, where the report is."""
        live = "".join(f"; {k} {v:.4f}" for k, v in self.performance.items())
        skipped = f"{self.skipped} unreadable request{'' if self.skipped == 1 else 's'} skipped"
        return (
            f"drift: {'yes' if self.drift else 'no'} ({self.reasons}) for {self.model} "
            f"v{self.version} on {self.rows} rows ({skipped}){live}; report: {self.link} "
            "(report.html)"
        )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class _Inputs:
    """Everything one check compares, read and checked before its run starts."""

    name: str
    version: str
    source: LogSource
    reference: Reference
    window: Window
    labelled: pd.DataFrame | None  # the window's labelled rows, when labels were given


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

    from mlstack import tracking

    settings = settings or get_settings()
    # Process-wide URIs too: the check's run is logged through MLflow's fluent API.
    client = tracking.client_for(tracking.configure_tracking(settings))
    inputs = _read_inputs(client, model, log, since, last, labels)
    reference = inputs.reference
    drift = compare(
        reference.frame,
        inputs.window.rows,
        reference.profile,
        importance=reference.importance,
        labelled=inputs.labelled,
        heldout=reference.heldout,
    )
    performance = _performance(inputs)
    run = _log_check(inputs, drift, performance, settings, tags or {})
    return MonitorResult(
        model=inputs.name,
        version=inputs.version,
        drift=drift.drift,
        reasons=drift.verdict.reasons(),
        result=drift,
        rows=len(inputs.window.rows),
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        link=tracking.run_link(settings, run.info.experiment_id, run.info.run_id),
        performance=performance,
        skipped=inputs.window.skipped,
    )


def _read_inputs(
    client: Any,
    model: str | None,
    log: str | None,
    since: float | None,
    last: int | None,
    labels: Path | None,
) -> _Inputs:
    """The log, the serving version, its reference, the window and the labels: every
    UsageError a check can raise, raised here, before anything is written."""
    source = find_log(client, model, log)
    records = read_log(source, client)
    name, version = serving_version(records, model, source)
    reference = load_reference(client, name, version)
    window = select(records, version, reference.profile, since=since, last=last)
    labelled = None
    if labels is not None:
        labelled = attach_labels(window.rows, read_labels(labels, records))
    return _Inputs(name, version, source, reference, window, labelled)


def _performance(inputs: _Inputs) -> dict[str, float]:
    """Live performance on the labelled rows, beside the version's held-out figure."""
    labelled, reference = inputs.labelled, inputs.reference
    if labelled is None or not len(labelled):
        return {}
    profile = reference.profile
    performance = {
        f"live_{profile.performance_metric}": profile.performance(labelled[LABEL], labelled)
    }
    if reference.heldout is not None:
        performance[f"heldout_{profile.heldout_metric}"] = float(reference.heldout)
    return performance


def _log_check(
    inputs: _Inputs,
    drift: DriftResult,
    performance: dict[str, float],
    settings: Settings,
    tags: dict[str, str],
) -> Any:
    """The monitoring run of one check (ended): tags, metrics and the Evidently report."""
    import mlflow

    from mlstack import tracking

    window, name, version = inputs.window, inputs.name, inputs.version
    run_tags = {
        logstore.KIND_TAG: logstore.MONITORING_KIND,
        logstore.MODEL_NAME_TAG: name,
        logstore.MODEL_VERSION_TAG: version,
        KIND_TAG: inputs.reference.profile.kind,
        "mlstack.reference_run_id": inputs.reference.run_id,
        logstore.PREDICTION_LOG_TAG: inputs.source.run_id or inputs.source.location,
        logstore.WINDOW_TAG: f"{_iso(window.since)} .. {_iso(window.until)}",
        logstore.DRIFT_TAG: "yes" if drift.drift else "no",
        logstore.DRIFT_REASONS_TAG: drift.verdict.reasons(),
        "mlstack.drift_reference": drift.verdict.reference,
        **tags,
    }
    run_name = f"{name}-v{version}-{time.strftime('%Y%m%dT%H%M%S')}"
    with tracking.tracked_run(
        logstore.monitoring_experiment(name), settings, entry_point="monitor", run_name=run_name
    ) as run:
        mlflow.set_tags(run_tags)
        mlflow.log_params(drift.verdict.thresholds.as_params())
        mlflow.log_metrics(_metrics(drift, window, performance))
        if inputs.labelled is not None:
            mlflow.log_metric("labelled_rows", len(inputs.labelled))
        with tempfile.TemporaryDirectory(prefix="mlstack-monitor-") as tmp:
            for path in drift.save(Path(tmp)):
                mlflow.log_artifact(str(path))
    return run


def _metrics(drift: DriftResult, window: Window, performance: dict[str, float]) -> dict[str, float]:
    verdict = drift.verdict
    prediction = verdict.columns[verdict.prediction]
    metrics = {
        "drift": float(verdict.drift),
        "drifted_columns": float(len(verdict.moved)),
        "rows": float(len(window.rows)),
        "requests": float(window.requests),
        "skipped_requests": float(window.skipped),
        "reference_rows": float(verdict.reference_rows),
        "prediction_drift_effect": prediction.effect,
        "prediction_drift_p_value": prediction.p_value,
    }
    for column in verdict.columns.values():
        metrics[f"drift_effect.{column.column}"] = column.effect
        metrics[f"drift_p_value.{column.column}"] = column.p_value
        metrics[f"drift_threshold.{column.column}"] = column.threshold
        if column.importance is not None:
            metrics[f"importance.{column.column}"] = column.importance
    for test in (verdict.domain, verdict.performance):
        if test is not None:
            metrics[f"{test.name}_drift"] = float(test.drifted)
            metrics[f"{test.name}_effect"] = test.effect
            metrics[f"{test.name}_p_value"] = test.p_value
    if verdict.domain is not None:
        metrics["domain_auc"] = verdict.domain.effect
    return metrics | performance
