"""The skeleton every model's `train()` shares: check the input, load the data, open a tracked
run, log params, fit, evaluate, log the model and (when asked) register it.

A model module says only what differs, as a `Recipe` of callbacks over data it has loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import mlflow

from mlstack import registry, tracking
from mlstack.settings import Settings


@dataclass(frozen=True)
class Recipe:
    """What one training run of a model does, once its data is loaded and checked.

    The run's metrics are `evaluate(model)` then `fit_seconds`; `log_extras(model, metrics)`
    adds plots, the dataset and the drift reference; `log_model(model)` returns MLflow's
    ModelInfo; `score(champion)` measures a pyfunc champion by `rule.metric` on the same
    held-out rows.
    """

    experiment: str
    entry_point: str  # the MLproject entry point, tagged on the run
    run_name: str
    params: Mapping[str, object]  # everything logged as the run's params
    build: Callable[[], Any]  # the untrained model; made before the run opens
    fit: Callable[[Any], Any]  # fits the built model inside the run (timed as fit_seconds)
    evaluate: Callable[[Any], dict[str, float]]
    log_extras: Callable[[Any, dict[str, float]], None]
    log_model: Callable[[Any], Any]
    rule: registry.PromotionRule
    score: Callable[[Any], float]


def train(
    params: Any,
    prepare: Callable[[Settings], Recipe],
    *,
    register_as: str | None,
    tags: Mapping[str, str] | None,
    settings: Settings | None,
) -> tracking.TrainResult:
    """Run one training: `params.validate()` and the model name are checked and `prepare`
    loads the data before tracking is touched, so bad input creates no run.

    Returns:
        The finished run's id, metrics, model URI and (with `register_as`) the promotion decision.
    """
    settings = tracking.check_training_input(params, register_as, settings)
    recipe = prepare(settings)
    # The run itself is fluent (mlflow.start_run, log_*, log_model): the process-wide URIs must
    # name the store. Registering and loading the champion take this client instead.
    client = tracking.client_for(tracking.configure_tracking(settings))
    model = recipe.build()
    with tracking.tracked_run(
        recipe.experiment, settings, entry_point=recipe.entry_point, run_name=recipe.run_name
    ) as run:
        tracking.log_params_once(dict(recipe.params))
        mlflow.set_tags(dict(tags or {}))
        started = time.perf_counter()
        model = recipe.fit(model)
        fit_s = time.perf_counter() - started
        metrics = {**recipe.evaluate(model), "fit_seconds": fit_s}
        mlflow.log_metrics(metrics)
        recipe.log_extras(model, metrics)
        info = recipe.log_model(model)
        decision = registry.register_if_asked(
            info.model_uri,
            register_as,
            run_id=run.info.run_id,
            metrics=metrics,
            rule=recipe.rule,
            score=recipe.score,
            client=client,
        )
    return tracking.TrainResult.of(run, metrics, info.model_uri, decision)
