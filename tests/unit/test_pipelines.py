"""The retraining pipeline's parts that need no services: label files joined with a prediction
log (wine rows and digit images, unknown ids counted), kept once used, and the command line's
bad input, a Prefect server that is down included."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlstack.data import WINE_FEATURES, load_digits_data
from mlstack.monitor.profiles import PROFILES
from mlstack.pipelines import labels as labelling
from tests.helpers import make_wine_frame, run_entry


def _log(kind: str) -> tuple[pd.DataFrame, object]:
    if kind == "wine":
        frame = make_wine_frame(4)[list(WINE_FEATURES)]
        columns, rows = list(frame.columns), frame.to_numpy().tolist()
        bodies = [
            {"dataframe_split": {"columns": columns, "data": rows[:2]}},
            {"dataframe_split": {"columns": columns, "data": rows[2:]}},
        ]
        inputs = frame
    else:
        inputs = load_digits_data(None, test_size=0.2, seed=42).x_test[:4]
        bodies = [{"inputs": inputs[:2].tolist()}, {"inputs": inputs[2:].tolist()}]
    log = pd.DataFrame(
        {
            "request_id": ["a", "b"],
            "content_type": "application/json",
            "request": [json.dumps(b) for b in bodies],
        }
    )
    return log, inputs


@pytest.mark.parametrize("kind", ["wine", "digits"])
def test_labels_join_the_logged_inputs_and_are_kept_once_used(tmp_path: Path, kind: str) -> None:
    log, inputs = _log(kind)
    folder = tmp_path / kind
    folder.mkdir()
    pd.DataFrame({"request_id": ["b", "a", "zzz"], "row": [1, 0, 0], "label": [7, 3, 5]}).to_csv(
        folder / "batch.csv", index=False
    )
    new = labelling.gather_new(tmp_path, kind, PROFILES[kind], log)
    assert len(new) == 2 and new.unknown_ids == 1 and new.files == [folder / "batch.csv"]
    data = new.training_data()
    if kind == "wine":  # row 1 of request b is the 4th row; row 0 of a the 1st
        np.testing.assert_allclose(data[list(WINE_FEATURES)].to_numpy(),
                                   inputs.iloc[[3, 0]].to_numpy(), rtol=1e-12)  # fmt: skip
        assert list(data["quality"]) == [7, 3]
    else:
        images, labels = data
        np.testing.assert_allclose(images, np.asarray(inputs)[[3, 0]], rtol=1e-6)
        assert list(labels) == [7, 3]

    labelling.mark_used(tmp_path, kind, new)
    assert labelling.new_files(tmp_path, kind) == []  # new exactly once ...
    assert (folder / "used" / "batch.csv").exists()
    kept = labelling.used(tmp_path, kind, kind)  # ... and learnt from again later
    assert len(kept) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefect-url", "http://127.0.0.1:9/api", "run", "wine"],
         "Prefect server http://127.0.0.1:9/api is not reachable (connection refused)"),
        (["run", "wine", "--params", "[1]"], "--params must be a JSON object"),
        (["run", "wine", "--params", "{alpha"], "is not JSON"),
        (["serve", "--every", "0"], "--every 0.0: give minutes > 0"),
    ],
    ids=["prefect-down", "params-not-object", "params-not-json", "every-zero"],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    proc = run_entry(["-m", "mlstack.pipelines", *args], None, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m mlstack.pipelines: error:") and message in last


def test_prefect_is_configured_from_the_pipelines_settings(monkeypatch) -> None:
    from mlstack.pipelines.__main__ import configure_prefect
    from mlstack.settings import DEFAULT_PREFECT_URL, PipelinesSettings

    for name in ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED"):
        monkeypatch.setenv(name, "")  # recorded, so what configure_prefect writes is undone
        monkeypatch.delenv(name)
    assert configure_prefect(PipelinesSettings()) == DEFAULT_PREFECT_URL
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    # What the user exported is read by the settings object; --prefect-url beats it.
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "true")
    assert configure_prefect(PipelinesSettings()) == "http://prefect.example:4200/api"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    assert (
        configure_prefect(PipelinesSettings(), "http://other:4200/api") == "http://other:4200/api"
    )
    assert os.environ["PREFECT_API_URL"] == "http://other:4200/api"


def test_label_files_are_read_as_the_monitor_reads_them(tmp_path: Path) -> None:
    from mlstack.errors import UsageError
    from mlstack.logstore import write_parquet
    from mlstack.monitor.window import read_labels

    log, _ = _log("wine")
    folder = tmp_path / "wine"
    folder.mkdir()
    # Parquet, the label named as in the training data, no row column: row 0 of each request.
    write_parquet(pd.DataFrame({"request_id": ["a", "b"], "quality": [6, 4]}),
                  folder / "feedback.parquet")  # fmt: skip
    new = labelling.gather_new(tmp_path, "wine", PROFILES["wine"], log)
    monitored = read_labels(folder / "feedback.parquet", log)
    assert list(new.table["quality"]) == list(monitored["label"]) == [6, 4]
    assert list(monitored["row"]) == [0, 0]
    pd.DataFrame({"request_id": ["a"], "score": [1]}).to_csv(folder / "bad.csv", index=False)
    with pytest.raises(UsageError, match=r"bad\.csv: needs columns request_id and label"):
        labelling.gather_new(tmp_path, "wine", PROFILES["wine"], log)


def test_the_stack_makes_each_retrained_models_labels_folder(tmp_path: Path) -> None:
    from mlstack.stack.config import StackConfig
    from mlstack.stack.pipelines import RetrainRunner
    from mlstack.stack.processes import ProcessTable

    config = StackConfig(state_dir=tmp_path, retrain_models="wine, digits")
    folders = RetrainRunner(config, ProcessTable(tmp_path)).make_labels_dirs()
    assert folders == [tmp_path / "labels" / "wine", tmp_path / "labels" / "digits"]
    assert all(folder.is_dir() for folder in folders)


def test_the_gc_deployment_is_off_unless_asked(tmp_path: Path) -> None:
    from mlstack.pipelines.__main__ import deployments, parse_args

    plain = deployments(parse_args(["serve", "--models", "wine,digits"]))
    assert [(d.flow_name, d.name) for d in plain] == [("retrain", "wine"), ("retrain", "digits")]
    args = ["serve", "--gc-older-than", "30d", "--gc-every", "12", "--gc-state-dir", str(tmp_path)]
    gc = [d for d in deployments(parse_args(args)) if d.flow_name == "stack-gc"]
    assert len(gc) == 1
    assert gc[0].parameters == {"state_dir": str(tmp_path.resolve()), "older_than": "30d"}


def test_a_gc_deployment_needs_its_stack(tmp_path: Path) -> None:
    proc = run_entry(["-m", "mlstack.pipelines", "serve", "--gc-older-than", "30d"], None)
    assert proc.returncode == 2 and "--gc-state-dir" in proc.stderr
