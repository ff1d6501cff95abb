"""Digits CNN (TensorFlow/Keras): train, log per-epoch metrics, a confusion matrix and the model.

`train()` is what `train_digits.py` and the MLproject `digits` entry point call. The model is
logged with MLflow's tensorflow flavor so it loads through `mlflow.pyfunc` with a tensor signature.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import mlflow
import numpy as np

from mlstack import registry, tracking, training
from mlstack.data import NUM_DIGIT_CLASSES, DigitsData, load_digits_data
from mlstack.params import DIGITS_EXPERIMENT, DigitsParams  # callers use digits.DigitsParams
from mlstack.settings import Settings

log = logging.getLogger(__name__)

EXPERIMENT = DIGITS_EXPERIMENT
MODEL_ARTIFACT = "model"
PROMOTION = registry.PromotionRule(metric="test_accuracy", greater_is_better=True)

CONV1_FILTERS = 32
CONV2_FILTERS = 64
DROPOUT = 0.3
VALIDATION_SPLIT = 0.1

MODEL_REQUIREMENTS = ("mlflow", "tensorflow-cpu", "keras", "numpy")


def build_model(image_shape: tuple[int, int, int], learning_rate: float):
    """Two conv layers, pooling, dropout, softmax; compiled with Adam. Returns a keras.Model."""
    import keras

    model = keras.Sequential(
        [
            keras.Input(image_shape),
            keras.layers.Conv2D(CONV1_FILTERS, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(CONV2_FILTERS, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(DROPOUT),
            keras.layers.Dense(NUM_DIGIT_CLASSES, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and ask TF for deterministic kernels."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _epoch_logger():
    """A Keras callback that logs each epoch's loss/accuracy as MLflow step metrics."""
    import keras

    class EpochMetrics(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if logs:
                mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch)

    return EpochMetrics()


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray):
    """Confusion matrix of test labels vs predictions, as a matplotlib Figure."""
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=list(range(NUM_DIGIT_CLASSES)))
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax)
    for (i, j), count in np.ndenumerate(cm):
        if count:
            color = "white" if count > cm.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    ticks = list(range(NUM_DIGIT_CLASSES))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true")
    ax.set_title(f"digits CNN, test accuracy {np.mean(y_true == y_pred):.3f}")
    return fig


def accuracy(model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    """The share of `images` whose most probable class (by `model.predict`, a Keras or
    pyfunc model) is the label."""
    probabilities = np.asarray(model.predict(images))
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def train(
    params: DigitsParams,
    *,
    data: str | None = None,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
    experiment: str = EXPERIMENT,
    register_as: str | None = None,
    tags: dict[str, str] | None = None,
    verbose: int = 2,
    settings: Settings | None = None,
) -> tracking.TrainResult:
    """Train, evaluate, log and (optionally) register one digits CNN.

    `extra` labelled images and labels are split with the same test share and join both parts.
    The held-out split's image statistics, predictions and labels are logged as the version's
    drift reference (mlstack.monitor). `tags` go on the run.
    Input is validated and the data loaded before the run starts, so bad input creates no run.

    Returns:
        The finished run's id, metrics, model URI and (with `register_as`) the promotion decision.
    """

    def prepare(settings: Settings) -> training.Recipe:
        digits = load_digits_data(data, test_size=params.test_size, seed=params.seed)
        labelled, original_test = 0, len(digits.x_test)
        if extra is not None and len(extra[0]):
            images, labels = extra
            labelled = len(images)
            digits = digits.with_labelled(
                images, labels, test_size=params.test_size, seed=params.seed
            )
        return _recipe(params, digits, experiment, labelled, verbose, original_test)

    return training.train(params, prepare, register_as=register_as, tags=tags, settings=settings)


def _recipe(
    params: DigitsParams,
    digits: DigitsData,
    experiment: str,
    labelled: int,
    verbose: int,
    original_test: int,
) -> training.Recipe:
    """How a digits run builds, fits, scores and logs its CNN on the loaded split (the first
    `original_test` held-out images are the original data's, the rest labelled ones)."""

    def build():
        make_deterministic(params.seed)
        return build_model(digits.image_shape, params.learning_rate)

    def scores(model) -> dict[str, float]:
        test_loss, test_accuracy = model.evaluate(digits.x_test, digits.y_test, verbose=0)
        return {"test_loss": float(test_loss), "test_accuracy": float(test_accuracy)}

    return training.Recipe(
        experiment=experiment,
        entry_point="digits",
        run_name=f"cnn-epochs{params.epochs}-lr{params.learning_rate:g}",
        params={
            **asdict(params),
            "data_source": digits.source,
            "n_train": len(digits.x_train),
            "image_shape": "x".join(map(str, digits.image_shape)),
            "labelled_rows": labelled,
        },
        build=build,
        fit=lambda model: _fit(model, digits, params, verbose),
        evaluate=scores,
        log_extras=lambda model, metrics: _log_extras(model, digits, metrics, original_test),
        log_model=lambda model: _log_model(model, digits),
        rule=PROMOTION,
        score=lambda champion: accuracy(champion, digits.x_test, digits.y_test),
    )


def _fit(model: Any, digits: DigitsData, params: DigitsParams, verbose: int) -> Any:
    """Fit the CNN on the training split, logging each epoch's metrics as steps."""
    model.fit(
        digits.x_train,
        digits.y_train,
        epochs=params.epochs,
        batch_size=params.batch_size,
        validation_split=VALIDATION_SPLIT,
        shuffle=True,
        callbacks=[_epoch_logger()],
        verbose=verbose,
    )
    return model


def _log_extras(
    model: Any, digits: DigitsData, metrics: dict[str, float], original_test: int
) -> None:
    """Log the confusion matrix and the held-out split as the drift reference, with each
    image region's importance to the CNN (mlstack.monitor.importance: regions swapped
    between held-out images)."""
    from mlstack.monitor.importance import permutation_importance, region_masks
    from mlstack.monitor.profiles import PROFILES, SEGMENT_LABELLED, SEGMENT_ORIGINAL
    from mlstack.monitor.reference import log_reference

    probabilities = model.predict(digits.x_test, verbose=0)
    mlflow.log_figure(
        confusion_figure(digits.y_test, probabilities.argmax(axis=1)),
        "plots/confusion_matrix.png",
    )
    profile = PROFILES["digits"]
    segments = np.where(
        np.arange(len(digits.x_test)) >= original_test, SEGMENT_LABELLED, SEGMENT_ORIGINAL
    )
    reference = profile.reference(digits.x_test, probabilities, digits.y_test, segments)
    importance = permutation_importance(
        lambda x: model.predict(x, batch_size=1024, verbose=0),
        digits.x_test,
        region_masks(digits.image_shape),
    )
    log_reference(profile, reference, metrics["test_accuracy"], None, importance,
                  "region swapped between held-out images")  # fmt: skip


def _log_model(model: Any, digits: DigitsData) -> Any:
    """Log the CNN with the tensorflow flavor, a tensor signature and pinned requirements."""
    import keras
    import mlflow.tensorflow
    from mlflow.models import infer_signature

    keras.utils.disable_interactive_logging()  # MLflow's example checks would draw bars
    sample = digits.x_train[:5]
    return mlflow.tensorflow.log_model(
        model,
        name=MODEL_ARTIFACT,
        signature=infer_signature(sample, model.predict(sample, verbose=0)),
        input_example=digits.x_train[:2],
        pip_requirements=tracking.pinned_requirements(MODEL_REQUIREMENTS),
    )
