"""The prediction log's one home: what a record holds, how a log file is written and read, and
the names (experiments, tags, the artifact folder) by which serving, monitoring, the pipelines
and the simulator find a model's log and its checks.

The server writes the log (mlstack.serving.predlog: the writer thread and its sinks); everything
else only reads it, through this module, so none of them imports the server. Importing it is
cheap: pandas, fastparquet and MLflow load only inside the functions that need them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

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
ARTIFACT_PATH = "predictions"  # where a prediction-log run keeps its Parquet files

# Tags on the runs that hold a log, the monitoring checks and the pipeline runs.
KIND_TAG = "mlstack.kind"  # what a run is: one of the *_KIND values
MODEL_NAME_TAG = "mlstack.model_name"
MODEL_VERSION_TAG = "mlstack.model_version"
MODEL_URI_TAG = "mlstack.model_uri"  # on a prediction-log run: what the server served
PREDICTION_LOG_TAG = "mlstack.prediction_log"  # on a check: the log's run id or directory
WINDOW_TAG = "mlstack.window"  # on a check: "<first> .. <last>" (ISO times)
DRIFT_TAG = "mlstack.drift"  # on a check: "yes" / "no"
DRIFT_REASONS_TAG = "mlstack.drift_reasons"  # on a check: why, in a few words
PREDICTION_LOG_KIND = "prediction-log"
MONITORING_KIND = "monitoring"


def predictions_experiment(model: str) -> str:
    """The experiment of `model`'s prediction-log runs (`--log-predictions mlflow`)."""
    return f"{model}-predictions"


def monitoring_experiment(model: str) -> str:
    """The experiment of `model`'s drift checks (python -m mlstack.monitor)."""
    return f"{model}-monitoring"


def prediction_log_runs(client: Any, model: str, max_results: int | None = None) -> list[Any]:
    """`model`'s prediction-log runs, newest first (at most `max_results`); [] when none."""
    experiment = client.get_experiment_by_name(predictions_experiment(model))
    if experiment is None:
        return []
    limit = {"max_results": max_results} if max_results is not None else {}
    return client.search_runs(
        [experiment.experiment_id],
        f"tags.`{KIND_TAG}` = '{PREDICTION_LOG_KIND}'",
        order_by=["attributes.start_time DESC"],
        **limit,
    )


@dataclass(frozen=True)
class Record:
    """One answered request, as one row of the log (the fields are SCHEMA_FIELDS)."""

    request_id: str
    timestamp: float
    model_name: str | None
    model_version: str | None
    run_id: str | None
    content_type: str
    request: str
    response: str
    rows: int


def count_predictions(response: str) -> int:
    """Rows answered: the length of "predictions" in a response body (0 when not a list)."""
    predictions = json.loads(response).get("predictions")
    return len(predictions) if isinstance(predictions, list) else 0


def new_record(
    *,
    request_id: str,
    model_name: str | None,
    model_version: str | None,
    run_id: str | None,
    content_type: str,
    request: bytes | str,
    response: bytes | str,
    rows: int | None = None,
    timestamp: float | None = None,
) -> Record:
    """The record of one answered request, as the server logs it: bodies as text (a request
    that is not UTF-8, e.g. Parquet, keeps replacement characters), `rows` counted from the
    response when not given, `timestamp` now when not given."""
    if isinstance(request, bytes):
        request = request.decode("utf-8", errors="replace")
    if isinstance(response, bytes):
        response = response.decode()
    return Record(
        request_id=request_id,
        timestamp=time.time() if timestamp is None else timestamp,
        model_name=model_name,
        model_version=model_version,
        run_id=run_id,
        content_type=content_type,
        request=request,
        response=response,
        rows=count_predictions(response) if rows is None else rows,
    )


def frame_of(records: Iterable[Record]) -> pd.DataFrame:
    """Records as the table a log file holds."""
    import pandas as pd

    return pd.DataFrame([asdict(r) for r in records], columns=list(SCHEMA_FIELDS))


def read_parquet(path: Path) -> pd.DataFrame:
    """One Parquet file as a DataFrame, read with fastparquet: pyarrow's reader leaves a thread
    pool that can abort the process at exit ("terminate called without an active exception",
    apache/arrow#34314; seen once in this project's test suite)."""
    import fastparquet

    return fastparquet.ParquetFile(str(path)).to_pandas()


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """One Parquet file, zstd-compressed, written with fastparquet (the serving image has no
    pyarrow; any Parquet reader reads the file)."""
    import fastparquet

    fastparquet.write(str(path), frame, compression="ZSTD", write_index=False)


def load_prediction_log(source: str | Path, tracking_uri: str | None = None) -> pd.DataFrame:
    """Every record of a prediction log, as a DataFrame: `source` is a log
    directory or a run id whose artifacts hold one (`--log-predictions mlflow`)."""
    import pandas as pd

    path = Path(source)
    if not path.is_dir():
        import mlflow

        path = Path(
            mlflow.artifacts.download_artifacts(
                run_id=str(source), artifact_path=ARTIFACT_PATH, tracking_uri=tracking_uri
            )
        )
    files = sorted(path.glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(SCHEMA_FIELDS))
    return pd.concat([read_parquet(f) for f in files], ignore_index=True)
