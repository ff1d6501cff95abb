"""The prediction log's one home (mlstack.logstore): the record the server and the simulator
both build, a log file written and read back whole, the names that find a model's log, and an
import cheap enough for every reader."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from mlstack import logstore
from mlstack.serving.predlog import DirectorySink
from tests.helpers import PROJ_ROOT


def test_a_record_is_built_from_the_bodies_as_sent_and_answered() -> None:
    before = time.time()
    record = logstore.new_record(
        request_id="r1", model_name="wine", model_version="3", run_id="abc",
        content_type="application/vnd.apache.parquet", request=b"PAR1\xff\x00",
        response=json.dumps({"predictions": [5.1, 6.2]}).encode(),
    )  # fmt: skip
    assert before <= record.timestamp <= time.time()  # stamped now when not given
    assert record.rows == 2  # counted from the answer when the caller did not count
    assert record.request.startswith("PAR1") and "\ufffd" in record.request  # not UTF-8: kept
    given = logstore.new_record(
        request_id="r2", model_name=None, model_version=None, run_id=None,
        content_type="application/json", request="{}", response='{"predictions": {}}',
        rows=7, timestamp=12.5,
    )  # fmt: skip
    assert (given.rows, given.timestamp) == (7, 12.5)
    assert logstore.count_predictions('{"predictions": {"a": 1}}') == 0  # not a list


def _record(request_id: str, timestamp: float) -> logstore.Record:
    return logstore.new_record(
        request_id=request_id, model_name="wine", model_version="1", run_id=None,
        content_type="application/json", request="{}", response='{"predictions": [1]}',
        timestamp=timestamp,
    )  # fmt: skip


def test_a_log_directory_reads_back_every_record_in_schema_order(tmp_path: Path) -> None:
    records = [_record(f"id-{i}", float(i)) for i in range(5)]
    sink = DirectorySink(tmp_path / "log")
    sink.open()
    sink.write("predictions-a", logstore.frame_of(records[:2]))
    sink.write("predictions-b", logstore.frame_of(records[2:]))
    table = logstore.load_prediction_log(tmp_path / "log")
    assert list(table.columns) == list(logstore.SCHEMA_FIELDS)
    assert list(table["request_id"]) == [f"id-{i}" for i in range(5)]
    assert list(table["rows"]) == [1] * 5
    (tmp_path / "empty").mkdir()
    empty = logstore.load_prediction_log(tmp_path / "empty")
    assert empty.empty and list(empty.columns) == list(logstore.SCHEMA_FIELDS)


def test_experiment_names_are_the_documented_ones() -> None:
    # Users type these (docs/monitoring.md, the notebook): spelled out here on purpose.
    assert logstore.predictions_experiment("wine") == "wine-predictions"
    assert logstore.monitoring_experiment("digits") == "digits-monitoring"
    assert logstore.ARTIFACT_PATH == "predictions"


def test_importing_the_log_store_loads_neither_pandas_nor_mlflow() -> None:
    code = (
        "import sys, mlstack.logstore; "
        "print(sorted(m for m in ('pandas', 'mlflow', 'fastparquet') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJ_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
