"""Digits CNN on the embedded store: determinism, step metrics, pyfunc loading, the .npz path."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from mlstack import digits
from mlstack.data import load_digits_data
from mlstack.settings import Settings

pytestmark = pytest.mark.slow


def _history(run_id: str, key: str) -> list[float]:
    return [m.value for m in mlflow.MlflowClient().get_metric_history(run_id, key)]


def test_same_seed_gives_identical_training(settings: Settings) -> None:
    params = digits.DigitsParams(epochs=2, seed=3)
    a = digits.train(params, settings=settings, verbose=0)
    b = digits.train(params, settings=settings, verbose=0)
    assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
    assert a.metrics["test_loss"] == b.metrics["test_loss"]
    assert _history(a.run_id, "loss") == _history(b.run_id, "loss")
    assert len(_history(a.run_id, "val_accuracy")) == 2  # one point per epoch, as steps 0 and 1
    other = digits.train(digits.DigitsParams(epochs=2, seed=4), settings=settings, verbose=0)
    assert _history(other.run_id, "loss") != _history(a.run_id, "loss")


def test_model_loads_through_pyfunc_with_tensor_signature(settings: Settings) -> None:
    result = digits.train(digits.DigitsParams(epochs=1), settings=settings, verbose=0)
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["entry_point"] == "digits"
    assert run.data.params["image_shape"] == "8x8x1"
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert (artifacts / "plots" / "confusion_matrix.png").stat().st_size > 10_000

    info = mlflow.models.get_model_info(result.model_uri)
    (spec,) = info.signature.inputs.inputs
    assert spec.shape == (-1, 8, 8, 1) and spec.type == np.dtype("float32")
    model = mlflow.pyfunc.load_model(result.model_uri)
    x = load_digits_data(None, test_size=0.2, seed=42).x_test[:5]
    probabilities = model.predict(x)
    assert probabilities.shape == (5, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_mnist_style_npz_trains(settings: Settings, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 64),
        x_test=rng.integers(0, 256, (16, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 16),
    )
    result = digits.train(digits.DigitsParams(epochs=1), data=str(path), settings=settings)
    run = mlflow.get_run(result.run_id)
    assert run.data.params["image_shape"] == "28x28x1"
    assert run.data.params["data_source"] == str(path)
    assert 0.0 <= result.metrics["test_accuracy"] <= 1.0
