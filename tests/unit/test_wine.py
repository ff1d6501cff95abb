"""Wine training on the embedded store: what a run records, model behaviour, the real-data check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlstack import wine
from mlstack.data import WINE_FEATURES, read_wine_csv
from mlstack.settings import Settings
from mlstack.tracking import TrainResult
from tests.helpers import PROJ_ROOT, SHARED_WINE_CSV

pytestmark = pytest.mark.slow  # trains models


@pytest.fixture
def finished(settings: Settings) -> TrainResult:
    return wine.train(wine.WineParams(alpha=0.05, l1_ratio=0.5), settings=settings)


def test_run_records_params_metrics_tags_dataset_plot_and_model(
    settings: Settings, finished
) -> None:
    run = mlflow.get_run(finished.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.05" and run.data.params["l1_ratio"] == "0.5"
    assert run.data.params["data_source"] == settings.wine_data
    for key in ("rmse", "mae", "r2", "train_rmse"):
        assert run.data.metrics[key] == pytest.approx(finished.metrics[key])
    assert run.data.tags["entry_point"] == "main"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJ_ROOT, capture_output=True, text=True
    )
    expected = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert run.data.tags["git_commit"] == expected

    (dataset_input,) = run.inputs.dataset_inputs
    assert (
        dataset_input.dataset.digest
        and str(Path(settings.wine_data)) in dataset_input.dataset.source
    )
    assert dataset_input.tags[0].value == "training"

    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(settings.embedded_artifact_root)
    assert (artifacts / "plots" / "predicted_vs_actual.png").stat().st_size > 10_000


def test_logged_model_has_signature_example_and_pinned_requirements(finished) -> None:
    info = mlflow.models.get_model_info(finished.model_uri)
    assert [c.name for c in info.signature.inputs.inputs] == list(WINE_FEATURES)
    assert info.saved_input_example_info is not None
    local = Path(mlflow.artifacts.download_artifacts(finished.model_uri))
    requirements = (local / "requirements.txt").read_text().split()
    assert f"mlflow=={mlflow.__version__}" in requirements
    assert all("==" in line for line in requirements)


def test_served_model_matches_in_process_metrics(settings: Settings, finished) -> None:
    model = mlflow.pyfunc.load_model(finished.model_uri)
    frame = read_wine_csv(Path(settings.wine_data))
    x_train, x_test, y_train, y_test = wine.split(
        wine.load_wine(None, settings), wine.WineParams(alpha=0.05, l1_ratio=0.5)
    )
    rmse = float(np.sqrt(np.mean((model.predict(x_test) - y_test) ** 2)))
    assert rmse == pytest.approx(finished.metrics["rmse"])
    # Behaviour: column order does not matter (schema enforcement reorders by name) ...
    shuffled = x_test[list(reversed(WINE_FEATURES))]
    np.testing.assert_allclose(model.predict(shuffled), model.predict(x_test))
    # ... and more alcohol, the strongest signal in the fixture, means a better predicted score.
    row = frame[list(WINE_FEATURES)].iloc[[0]]
    stronger = row.assign(alcohol=row["alcohol"] + 2)
    assert model.predict(stronger)[0] > model.predict(row)[0]


def test_same_seed_same_metrics(settings: Settings) -> None:
    a = wine.train(wine.WineParams(seed=7), settings=settings)
    b = wine.train(wine.WineParams(seed=7), settings=settings)
    c = wine.train(wine.WineParams(seed=8), settings=settings)
    assert a.metrics["rmse"] == b.metrics["rmse"] != c.metrics["rmse"]


def test_runs_outside_the_project_still_land_in_the_store(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = wine.train(wine.WineParams(), settings=settings)
    run = mlflow.get_run(result.run_id)
    assert run.info.artifact_uri.startswith(settings.embedded_artifact_root.as_uri())
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.skipif(not SHARED_WINE_CSV.exists(), reason="real wine data not in ../shared/data")
def test_real_wine_data_rmse_in_expected_range(settings: Settings) -> None:
    result = wine.train(
        wine.WineParams(alpha=0.5, l1_ratio=0.5, seed=42, test_size=0.25),
        data=str(SHARED_WINE_CSV),
        settings=settings,
    )
    assert 0.70 <= result.metrics["rmse"] <= 0.82
    assert pd.read_csv(SHARED_WINE_CSV, sep=";").shape == (1599, 12)
