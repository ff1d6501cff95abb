"""The retraining pipeline of one model, as plain functions (flows.py runs them as Prefect
tasks): monitor -> new labelled data? -> retrain on the training data plus every labelled row
-> register as challenger; the promotion rule moves champion only if the new version wins on
the held-out split -> a server with --follow-alias serves it.

Each run is an MLflow run in `<model>-pipelines` whose tags link the monitoring run, the
training run and the version it made, and say why (`mlstack.trigger`: drift or new-data). The
training run and the version carry the same tags, so the UI shows why a version exists.

Drift alone does not retrain: a model retrained on the data its champion saw would be the
same model. It is recorded, and the next labelled rows (new-data) retrain.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlstack import logstore
from mlstack.data import BUILTIN_DIGITS
from mlstack.errors import UsageError
from mlstack.monitor.reference import KIND_TAG
from mlstack.pipelines import labels as labelling
from mlstack.registry import CHAMPION
from mlstack.settings import Settings, get_settings

PIPELINE_KIND = "pipeline"
Step = Callable[..., Any]


@dataclass
class PipelineResult:
    """What one pipeline run did."""

    model: str
    run_id: str
    trigger: str | None = None  # "drift", "new-data", or None: nothing retrained
    drift: bool | None = None  # None: not monitored (no log yet, too few rows, ...)
    monitoring: str = ""  # the monitoring line, or why monitoring was skipped
    monitoring_run_id: str | None = None
    new_rows: int = 0
    unknown_ids: int = 0
    training_run_id: str | None = None
    version: str | None = None
    promoted: bool = False
    decision: str = ""

    def line(self) -> str:
        """One line for people."""
        drift = {True: "drift", False: "no drift", None: "not monitored"}[self.drift]
        return (
            f"{self.model}: {drift}; {self.new_rows} new labelled rows; {self.decision} "
            f"(pipeline run {self.run_id})"
        )


def call(name: str, function: Step, *args: Any, **kwargs: Any) -> Any:
    """The default step runner: call the step (Prefect's wraps it in a task)."""
    return function(*args, **kwargs)


def champion_run(client: Any, model: str) -> Any:
    """The training run of `model`@champion, or a UsageError saying how to get one."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(model, CHAMPION)
    except MlflowException as exc:
        raise UsageError(
            f"model {model!r} has no {CHAMPION}: train one with --register-as {model} first"
        ) from exc
    run = client.get_run(version.run_id)
    if KIND_TAG not in run.data.tags:
        raise UsageError(
            f"{model}@{CHAMPION} (version {version.version}) was trained before drift "
            f"references were logged: train a new version with --register-as {model}"
        )
    return run


def prediction_logs(client: Any, model: str) -> Any:
    """Every record of every prediction-log run of `model` (for joining labels)."""
    import pandas as pd

    runs = logstore.prediction_log_runs(client, model)
    logs = [logstore.load_prediction_log(r.info.run_id, client.tracking_uri) for r in runs]
    if not logs:
        return pd.DataFrame(columns=list(logstore.SCHEMA_FIELDS))
    return pd.concat(logs, ignore_index=True)


def monitor_step(model: str, last: int, tags: dict[str, str], settings: Settings) -> Any:
    """The monitoring check, or the UsageError that says why it could not run."""
    from mlstack.monitor.run import monitor

    try:
        return monitor(model, last=last, tags=tags, settings=settings)
    except UsageError as exc:
        return exc


def train_step(
    kind: str,
    champion: Any,
    extra: Any,
    overrides: dict[str, Any],
    data: str | None,
    model: str,
    tags: dict[str, str],
    settings: Settings,
) -> Any:
    """Retrain `kind` with the champion's hyper-parameters (and `overrides`) on its training
    data (or `data`) plus `extra` labelled rows; register it as `model`."""
    from mlstack import digits, wine

    module = wine if kind == "wine" else digits
    params_type = module.WineParams if kind == "wine" else module.DigitsParams
    params = _params(params_type, champion.data.params, overrides)
    source = data if data is not None else champion.data.params.get("data_source")
    if kind == "digits" and source == BUILTIN_DIGITS:
        source = None
    return module.train(
        params,
        data=source,
        extra=extra,
        register_as=model,
        tags=tags,
        settings=settings,
        **({"verbose": 0} if kind == "digits" else {}),
    )


def _params(params_type: type, logged: dict[str, str], overrides: dict[str, Any]) -> Any:
    """`params_type` built from a run's logged params (by field), then `overrides`."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(params_type):
        if f.name in logged:
            values[f.name] = type(f.default)(float(logged[f.name]))
    unknown = set(overrides) - {f.name for f in dataclasses.fields(params_type)}
    if unknown:
        raise UsageError(
            f"unknown training parameters {sorted(unknown)} for {params_type.__name__}"
        )
    return params_type(**(values | overrides))


def run_pipeline(
    model: str,
    *,
    last: int = 1000,
    params: dict[str, Any] | None = None,
    data: str | None = None,
    labels_dir: Path | None = None,
    settings: Settings | None = None,
    tags: dict[str, str] | None = None,
    step: Step = call,
) -> PipelineResult:
    """One pass of the retraining pipeline for `model` (see the module docstring)."""

    from mlstack import tracking

    settings = settings or get_settings()
    client = tracking.tracking_client(settings)  # its steps (monitor, train) set up their own
    experiment_id = tracking.experiment_id_for(f"{model}-pipelines", settings, client)
    run = client.create_run(
        experiment_id,
        run_name=f"retrain-{model}-{time.strftime('%Y%m%dT%H%M%S')}",
        tags={logstore.KIND_TAG: PIPELINE_KIND, logstore.MODEL_NAME_TAG: model, **(tags or {})},
    )
    result = PipelineResult(model=model, run_id=run.info.run_id)
    status = "FAILED"
    try:
        _steps(
            client, result, labels_dir or settings.labels_path, last, params or {}, data,
            settings, step,
        )  # fmt: skip
        _record(client, result)
        status = "FINISHED"
    finally:
        client.set_terminated(result.run_id, status)
    return result


def _steps(
    client: Any,
    result: PipelineResult,
    labels_dir: Path,
    last: int,
    params: dict[str, Any],
    data: str | None,
    settings: Settings,
    step: Step,
) -> None:
    """Monitor, gather new labelled rows, and retrain on them: what happened, into `result`."""
    model = result.model
    links = {"mlstack.pipeline_run_id": result.run_id}
    try:
        champion = champion_run(client, model)
    except UsageError as exc:  # nothing to retrain yet: say so, and wait for the next run
        result.decision = f"skipped: {exc}"
        return
    kind = champion.data.tags[KIND_TAG]
    checked = step("monitor", monitor_step, model, last, links, settings)
    if isinstance(checked, UsageError):
        result.monitoring = f"not monitored: {checked}"
    else:
        result.drift, result.monitoring = checked.drift, checked.line()
        result.monitoring_run_id = checked.run_id
        links["mlstack.monitoring_run_id"] = checked.run_id
    new = step(
        "labelled-data",
        lambda: labelling.gather_new(
            labels_dir, model, _profile(kind), prediction_logs(client, model)
        ),
    )
    result.new_rows, result.unknown_ids = len(new), new.unknown_ids
    if not len(new):
        result.decision = "no new labelled rows, nothing to retrain on" + (
            "; drift recorded" if result.drift else ""
        )
        return
    result.trigger = "drift" if result.drift else "new-data"
    previous = labelling.used(labels_dir, model, kind)
    extra = labelling.Labelled(kind, _concat(previous.table, new.table)).training_data()
    links["mlstack.trigger"] = result.trigger
    trained = step("train", train_step, kind, champion, extra, params, data, model, links,
                   settings)  # fmt: skip
    labelling.mark_used(labels_dir, model, new)
    decision = trained.promotion
    result.training_run_id, result.version = trained.run_id, decision.version
    result.promoted, result.decision = decision.promoted, decision.summary()
    for key, value in links.items():
        client.set_model_version_tag(model, decision.version, key, value)


def _profile(kind: str) -> Any:
    from mlstack.monitor.profiles import PROFILES

    return PROFILES[kind]


def _concat(first: Any, second: Any) -> Any:
    import pandas as pd

    frames = [f for f in (first, second) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else second


def _record(client: Any, result: PipelineResult) -> None:
    """The pipeline run's tags and metrics: what happened and why."""
    tags = {
        "mlstack.trigger": result.trigger or "none",
        "mlstack.drift": {True: "yes", False: "no", None: "not monitored"}[result.drift],
        "mlstack.monitoring": result.monitoring[:4000],
        "mlstack.decision": result.decision,
    }
    for key, value in (
        ("mlstack.monitoring_run_id", result.monitoring_run_id),
        ("mlstack.training_run_id", result.training_run_id),
        (logstore.MODEL_VERSION_TAG, result.version),
    ):
        if value:
            tags[key] = value
    for key, value in tags.items():
        client.set_tag(result.run_id, key, value)
    client.log_metric(result.run_id, "new_labelled_rows", result.new_rows)
    client.log_metric(result.run_id, "unknown_label_ids", result.unknown_ids)
    client.log_metric(result.run_id, "promoted", float(result.promoted))
