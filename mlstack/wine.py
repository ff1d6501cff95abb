"""Wine-quality ElasticNet: fit, evaluate on a held-out split, log everything, optionally register.

`train()` is what `train.py`, the MLproject `main` entry point and the notebook call.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from mlstack import registry, tracking, training
from mlstack.data import WINE_TARGET, WineData, is_url, load_wine
from mlstack.errors import UsageError
from mlstack.params import WINE_EXPERIMENT, WineParams  # WineParams: callers use wine.WineParams
from mlstack.settings import Settings

log = logging.getLogger(__name__)

EXPERIMENT = WINE_EXPERIMENT
MODEL_ARTIFACT = "model"
PROMOTION = registry.PromotionRule(metric="rmse", greater_is_better=False)
ELASTICNET_MAX_ITER = 10_000  # the default 1,000 stops short for small alphas on this data

# What a served wine model needs (see tracking.pinned_requirements).
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "skops")  # skops: the format


def split(data: WineData, params: WineParams) -> tuple[pd.DataFrame, ...]:
    """Train/test split of features and target (deterministic for a seed)."""
    from sklearn.model_selection import train_test_split

    return tuple(
        train_test_split(
            data.features, data.target, test_size=params.test_size, random_state=params.seed
        )
    )


def build_model(params: WineParams):
    """The unfitted ElasticNet for `params` (a scikit-learn estimator)."""
    from sklearn.linear_model import ElasticNet

    return ElasticNet(
        alpha=params.alpha,
        l1_ratio=params.l1_ratio,
        random_state=params.seed,
        max_iter=ELASTICNET_MAX_ITER,
    )


def fit(x_train: pd.DataFrame, y_train: pd.Series, params: WineParams):
    """Fit the ElasticNet. Returns the fitted scikit-learn estimator."""
    return build_model(params).fit(x_train, y_train)


def evaluate(model, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """rmse, mae and r2 of `model` on (x, y)."""
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    pred = model.predict(x)
    return {
        "rmse": float(root_mean_squared_error(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)),
    }


def residuals_figure(y_true: pd.Series, y_pred: np.ndarray):
    """Predicted-vs-actual scatter and residual histogram, as a matplotlib Figure."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_scatter, ax_hist = fig.subplots(1, 2)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(y_true))
    ax_scatter.scatter(np.asarray(y_true) + jitter, y_pred, s=8, alpha=0.5)
    lo, hi = float(np.min(y_true)) - 0.5, float(np.max(y_true)) + 0.5
    ax_scatter.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="perfect")
    ax_scatter.set(xlabel="actual quality (jittered)", ylabel="predicted quality")
    ax_scatter.legend(loc="upper left")
    ax_hist.hist(np.asarray(y_pred) - np.asarray(y_true), bins=30)
    ax_hist.set(xlabel="residual (predicted - actual)", ylabel="count")
    fig.suptitle("wine ElasticNet on the held-out split")
    return fig


def train(
    params: WineParams,
    *,
    data: str | None = None,
    extra: pd.DataFrame | None = None,
    experiment: str = EXPERIMENT,
    register_as: str | None = None,
    tags: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> tracking.TrainResult:
    """Train, evaluate, log and (optionally) register one wine ElasticNet.

    `extra` labelled rows (the 11 features and quality) join the data before the split, so the
    held-out part has some of them too. The held-out split, its predictions and labels are
    logged as the version's drift reference (mlstack.monitor). `tags` go on the run.
    Input is validated and the data loaded before the run starts, so bad input creates no run.

    Returns:
        The finished run's id, metrics, model URI and (with `register_as`) the promotion decision.
    """

    def prepare(settings: Settings) -> training.Recipe:
        return _recipe(params, _load(params, data, extra, settings), experiment, extra)

    return training.train(params, prepare, register_as=register_as, tags=tags, settings=settings)


def _load(
    params: WineParams, data: str | None, extra: pd.DataFrame | None, settings: Settings
) -> tuple[WineData, tuple[pd.DataFrame, ...]]:
    """The wine table (plus `extra`) and its train/test split; UsageError for an empty part."""
    wine = load_wine(data, settings)
    if extra is not None and len(extra):
        wine = wine.with_labelled(extra)
    parts = split(wine, params)
    x_train, x_test = parts[0], parts[1]
    if len(x_test) == 0 or len(x_train) < 2:
        raise UsageError(f"--test-size {params.test_size} leaves an empty split; use 0.1-0.5")
    return wine, parts


def _recipe(
    params: WineParams,
    loaded: tuple[WineData, tuple[pd.DataFrame, ...]],
    experiment: str,
    extra: pd.DataFrame | None,
) -> training.Recipe:
    """How a wine run fits, scores and logs its ElasticNet on the loaded split."""
    wine, (x_train, x_test, y_train, y_test) = loaded

    def scores(model) -> dict[str, float]:
        metrics = evaluate(model, x_test, y_test)
        metrics["train_rmse"] = evaluate(model, x_train, y_train)["rmse"]
        return metrics

    def log_extras(model, metrics: dict[str, float]) -> None:
        from mlstack.monitor.importance import linear_importance
        from mlstack.monitor.profiles import PROFILES, SEGMENT_LABELLED, SEGMENT_ORIGINAL
        from mlstack.monitor.reference import log_reference

        _log_dataset(wine)
        predicted = model.predict(x_test)
        mlflow.log_figure(residuals_figure(y_test, predicted), "plots/predicted_vs_actual.png")
        profile = PROFILES["wine"]
        # Labelled production rows were appended after the original table (with_labelled),
        # and the split keeps each row's index.
        original = len(wine.frame) - (0 if extra is None else len(extra))
        segments = np.where(x_test.index >= original, SEGMENT_LABELLED, SEGMENT_ORIGINAL)
        reference = profile.reference(x_test, predicted, y_test, segments)
        importance = linear_importance(model.coef_, x_train)
        log_reference(profile, reference, metrics["rmse"], x_train, importance,
                      "|coefficient| x training spread")  # fmt: skip

    return training.Recipe(
        experiment=experiment,
        entry_point="main",
        run_name=f"elasticnet-alpha{params.alpha:g}-l1ratio{params.l1_ratio:g}",
        params={
            **asdict(params),
            "data_source": wine.source,
            "n_train": len(x_train),
            "labelled_rows": 0 if extra is None else len(extra),
        },
        build=lambda: build_model(params),
        fit=lambda model: model.fit(x_train, y_train),
        evaluate=scores,
        log_extras=log_extras,
        log_model=lambda model: _log_model(model, x_train),
        rule=PROMOTION,
        score=lambda champion: evaluate(champion, x_test, y_test)[PROMOTION.metric],
    )


def _log_model(model: Any, x_train: pd.DataFrame) -> Any:
    """Log the ElasticNet with the sklearn flavor, a signature, an example and pinned
    requirements."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    return mlflow.sklearn.log_model(
        model,
        name=MODEL_ARTIFACT,
        signature=infer_signature(x_train, model.predict(x_train)),
        input_example=x_train.head(3),
        pip_requirements=tracking.pinned_requirements(MODEL_REQUIREMENTS),
    )


def _log_dataset(wine: WineData) -> None:
    """Log the wine table as the run's training dataset (digest + source: URL or absolute path)."""
    import mlflow.data

    source = wine.source if is_url(wine.source) else str(wine.path.resolve())
    with warnings.catch_warnings():
        # MLflow warns that integer columns cannot hold NaN (quality is an int score, never
        # missing) and that a local path matches its local source type twice; neither applies.
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            wine.frame, source=source, name="winequality-red", targets=WINE_TARGET
        )
        mlflow.log_input(dataset, context="training")
