"""Which predictions are monitored: finding a model's prediction log, reading it, keeping the
serving version's rows in the window asked for, and attaching labels. Every problem a user can
fix is a UsageError naming it and the fix."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mlstack import logstore
from mlstack.errors import UsageError
from mlstack.monitor.profiles import LABEL, Profile, rows_from_log, wine_label_column

MIN_ROWS = 50  # below this the tests' p-values mean little
DEFAULT_LAST = 1000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """A start time: a duration back from now (30m, 2h, 1d) or an ISO date-time; epoch secs."""
    match = _DURATION.match(text.strip())
    if match:
        return (now or time.time()) - float(match[1]) * _SECONDS[match[2]]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError as exc:
        raise UsageError(
            f"--since {text!r} is neither a duration nor a date-time; e.g. --since 30m, "
            "--since 2h or --since 2026-11-24T09:00"
        ) from exc


@dataclass(frozen=True)
class LogSource:
    """Where a prediction log is: a directory, or the run whose artifacts hold it."""

    location: str
    run_id: str | None

    def describe(self) -> str:
        """For people: 'run <id>' or 'directory <path>'."""
        return f"run {self.run_id}" if self.run_id else f"directory {self.location}"


def find_log(client: Any, model: str | None, source: str | None) -> LogSource:
    """`source` as a directory or a run id; without one, the newest prediction-log run of
    `model` (experiment `<model>-predictions`)."""
    from mlflow.exceptions import MlflowException

    if source:
        if Path(source).is_dir():
            return LogSource(str(Path(source).resolve()), None)
        try:
            client.get_run(source)
        except MlflowException as exc:
            raise UsageError(
                f"--log {source!r} is neither a directory nor a run id of this tracking store; "
                "pass the run id `python -m mlstack.serving` printed, or its --log-predictions "
                "directory"
            ) from exc
        return LogSource(source, source)
    if not model:
        raise UsageError("name the model (--model NAME) or the log (--log RUN_ID|DIR)")
    runs = logstore.prediction_log_runs(client, model, max_results=1)
    if not runs:
        raise UsageError(
            f"no prediction log for model {model!r} (experiment "
            f"{logstore.predictions_experiment(model)} is empty or missing): serve it with "
            "--log-predictions mlflow, or pass --log RUN_ID|DIR"
        )
    return LogSource(runs[0].info.run_id, runs[0].info.run_id)


def read_log(source: LogSource, client: Any) -> pd.DataFrame:
    """Every record of the log; a UsageError when it holds none."""
    log = logstore.load_prediction_log(source.location, client.tracking_uri)
    if log.empty:
        raise UsageError(
            f"the prediction log in {source.describe()} holds no predictions yet: send traffic "
            "to the server first (python -m mlstack.monitor.simulate does)"
        )
    return log


def serving_version(log: pd.DataFrame, model: str | None, source: LogSource) -> tuple[str, str]:
    """(model name, version) of the newest record; a UsageError if it is another model's log."""
    newest = log.loc[log["timestamp"].idxmax()]
    name = str(newest["model_name"])
    if model and name != model:
        raise UsageError(
            f"the prediction log in {source.describe()} is of model {name!r}, not {model!r}: "
            f"pass --model {name}, or the log of {model}"
        )
    return name, str(newest["model_version"])


@dataclass(frozen=True)
class Window:
    """The monitored rows: the serving version's, newest last."""

    rows: pd.DataFrame
    since: float
    until: float
    requests: int
    skipped: int  # logged requests in the window's span that could not be read back


def select(
    log: pd.DataFrame,
    version: str,
    profile: Profile,
    *,
    since: float | None = None,
    last: int | None = None,
    min_rows: int = MIN_ROWS,
) -> Window:
    """The rows of `version` since `since` (epoch seconds), the last `last` of them (default
    DEFAULT_LAST when neither is given); a UsageError under `min_rows`. `skipped` counts the
    requests in that span the profile could not read back: logged, but not in the window."""
    records = log[log["model_version"].astype(str) == version]
    if since is not None:
        records = records[records["timestamp"] >= since]
    parsed = rows_from_log(records.sort_values("timestamp"), profile)
    rows = parsed.rows
    if last is None and since is None:
        last = DEFAULT_LAST
    start = float("-inf")  # every parsed request is in the span, unless `last` cut some off
    if last is not None and len(rows) > last:
        rows = rows.tail(last)
        start = float(rows["timestamp"].min())
    skipped = sum(1 for at in parsed.skipped_at if at >= start)
    if len(rows) < min_rows:
        unreadable = f" ({skipped} more logged requests could not be read back)" if skipped else ""
        raise UsageError(
            f"the window holds {len(rows)} predictions of version {version}{unreadable}, fewer "
            f"than the {min_rows} needed to compare distributions: wait for more traffic, or "
            "widen it (--since, --last)"
        )
    return Window(
        rows=rows.reset_index(drop=True),
        since=float(rows["timestamp"].min()),
        until=float(rows["timestamp"].max()),
        requests=rows["request_id"].nunique(),
        skipped=skipped,
    )


def read_label_file(path: Path, name: str | None = None) -> pd.DataFrame:
    """A labels file (CSV or Parquet: request_id, label or quality, optional row) as columns
    request_id (text), row (0 when absent) and label; the one reader of label files, here and
    in the retraining pipeline. A UsageError, naming the file as `name`, when it is missing
    or lacks those columns."""
    name = name or str(path)
    if not path.is_file():
        raise UsageError(f"{name}: no such file; give a CSV or Parquet file")
    frame = logstore.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    frame = wine_label_column(frame)
    if "request_id" not in frame or LABEL not in frame:
        raise UsageError(
            f"{name}: needs columns request_id and label (or quality), has "
            f"{', '.join(map(str, frame.columns))}"
        )
    if "row" not in frame:
        frame["row"] = 0
    return frame[["request_id", "row", LABEL]].astype({"request_id": str, "row": "int64"})


def read_labels(path: Path, log: pd.DataFrame) -> pd.DataFrame:
    """A labels file (read_label_file) checked against the log: every id must be one the
    server answered."""
    frame = read_label_file(path, f"--labels {path}")
    unknown = sorted(set(frame["request_id"]) - set(log["request_id"].astype(str)))
    if unknown:
        raise UsageError(
            f"--labels {path}: {len(unknown)} of {frame['request_id'].nunique()} request ids "
            f"are not in this prediction log (e.g. {unknown[0]}): is it this model's labels file?"
        )
    return frame


def attach_labels(rows: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The window's rows that have a label, with it."""
    keyed = rows.astype({"request_id": str, "row": "int64"})
    return keyed.merge(labels, on=["request_id", "row"], how="inner")
