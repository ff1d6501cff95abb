"""Loading a served model: the pyfunc, its registry identity, and the fast-path plan (a
scikit-learn model on named numeric columns, or a Keras model on one tensor)."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlstack import logstore
from mlstack.errors import UsageError

# Column types the fast path turns into one float64 matrix exactly as pandas + scikit-learn do.
FAST_TYPES = {"double": float, "long": int}
MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version. Swapped whole on reload, never mutated."""

    uri: str
    pyfunc: Any
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    experiment_id: str | None = None
    # Training ranges of named inputs, from the version's reference (None when it has none).
    ranges: dict[str, dict[str, float]] | None = None
    loaded_at: float = field(default_factory=time.time)
    estimator: Any = None  # set when the tabular fast path applies (scikit-learn)
    columns: tuple[str, ...] = ()
    column_types: tuple[type, ...] = ()
    keras: Any = None  # set when the tensor fast path applies (a Keras model)
    tensor_shape: tuple[int, ...] = ()  # the signature's, -1 for any size
    tensor_dtype: Any = None  # numpy dtype
    keras_flavor: bool = False  # MLflow's pyfunc calls Keras' predict: see quiet_keras

    @property
    def input_schema(self):
        """The signature's input schema (None without a signature)."""
        return self.pyfunc.metadata.get_input_schema()

    def describe(self) -> dict[str, Any]:
        """What /version reports."""
        return {
            "model_uri": self.uri,
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "fast_path": self.estimator is not None or self.keras is not None,
            "loaded_at": self.loaded_at,
        }

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Fast path: the estimator on a float64 matrix in the signature's column order."""
        with warnings.catch_warnings():
            # Fitted on a DataFrame, given the same columns as an array: same numbers.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            return self.estimator.predict(matrix)

    def predict_tensor(self, tensor: np.ndarray) -> np.ndarray:
        """Fast path: the Keras model on one batch, without `predict`'s per-call dataset,
        callbacks and progress bar (84 ms a call for one image, against 2 ms)."""
        return np.asarray(self.keras.predict_on_batch(tensor))


def fast_path_plan(pyfunc: Any) -> tuple[Any, tuple[str, ...], tuple[type, ...]]:
    """(estimator, columns, python types) when the fast path applies, else (None, (), ())."""
    schema = pyfunc.metadata.get_input_schema()
    if "sklearn" not in pyfunc.metadata.flavors or schema is None or not schema.has_input_names():
        return None, (), ()
    if schema.is_tensor_spec() or pyfunc.metadata.get_params_schema() is not None:
        return None, (), ()
    names, types = [], []
    for spec in schema.inputs:
        kind = getattr(spec.type, "name", None)
        if kind not in FAST_TYPES or not spec.required:
            return None, (), ()
        names.append(spec.name)
        types.append(FAST_TYPES[kind])
    return pyfunc.get_raw_model(), tuple(names), tuple(types)


TENSOR_TOLERANCE = 1e-5  # largest |fast path - pyfunc| accepted on the input example


def tensor_plan(pyfunc: Any) -> tuple[Any, tuple[int, ...], Any]:
    """(Keras model, shape, numpy dtype) when the tensor fast path applies: MLflow's
    tensorflow flavor holding a Keras model, one tensor input, no params. Else (None, (), None)."""
    flavor = pyfunc.metadata.flavors.get("tensorflow") or {}
    schema = pyfunc.metadata.get_input_schema()
    if flavor.get("model_type") != "keras" or schema is None or not schema.is_tensor_spec():
        return None, (), None
    if len(schema.inputs) != 1 or pyfunc.metadata.get_params_schema() is not None:
        return None, (), None
    spec = schema.inputs[0]
    keras = pyfunc.get_raw_model()
    # One output: its rows are the answer's rows (several would need pyfunc's own packing).
    if not hasattr(keras, "predict_on_batch") or len(getattr(keras, "outputs", None) or ()) != 1:
        return None, (), None
    return keras, tuple(int(d) for d in spec.shape), np.dtype(spec.type)


def _tensor_fast_path_agrees(pyfunc: Any, keras: Any, example: Any, dtype: Any) -> bool:
    """The fast path answers the input example as pyfunc does (within TENSOR_TOLERANCE); it
    also builds the model's batch function, so the first request does not."""
    if example is None:
        return False
    try:
        tensor = np.asarray(example, dtype=dtype)
        fast = np.asarray(keras.predict_on_batch(tensor), dtype="float64")
        slow = np.asarray(pyfunc.predict(tensor), dtype="float64")
    except Exception:  # an example or outputs it cannot take: MLflow serves it, as before
        return False
    return fast.shape == slow.shape and float(np.max(np.abs(fast - slow))) <= TENSOR_TOLERANCE


def quiet_keras() -> None:
    """No progress bar per request in the server's log: MLflow's pyfunc calls Keras'
    `predict`, which prints one to stdout, or with interactive logging off logs it at INFO
    through absl (the `absl` logger), which a server keeps at WARNING. Keras keeps the switch
    per thread: call it in each thread that predicts."""
    import logging

    import keras

    keras.utils.disable_interactive_logging()
    logging.getLogger("absl").setLevel(logging.WARNING)


def resolve_version(model_uri: str, client: Any) -> str | None:
    """The registry version `model_uri` names now (None for URIs outside the registry)."""
    match = MODEL_URI.match(model_uri)
    if not match:
        return None
    if match["alias"]:
        return str(client.get_model_version_by_alias(match["name"], match["alias"]).version)
    return str(client.get_model_version(match["name"], match["version"]).version)


def load_model(model_uri: str, client: Any, version: str | None = None) -> ServedModel:
    """Load `model_uri` (models:/name@alias, models:/name/N, runs:/..., a path) for serving.

    `client` (an MlflowClient) resolves registry URIs; None will do for other URIs. `version`
    pins a registry URI to that version (how several workers load the same one).
    """
    import mlflow

    name = alias = None
    resolved = model_uri
    match = MODEL_URI.match(model_uri)
    if not match:
        version = None
    else:
        name, alias = match["name"], match["alias"]
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias and version is None
            else client.get_model_version(name, version or match["version"])
        )
        version = str(mv.version)
        # Load the resolved version, so an alias moving mid-load cannot mix two versions,
        # from the client's own registry and tracking server.
        resolved = client.get_model_version_download_uri(name, version)
    tracking_uri = client.tracking_uri if client is not None else None
    local = mlflow.artifacts.download_artifacts(artifact_uri=resolved, tracking_uri=tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(local)
    keras_flavor = "tensorflow" in pyfunc.metadata.flavors
    if keras_flavor:
        quiet_keras()
    example = pyfunc.metadata.load_input_example(local)
    if example is not None:
        pyfunc.predict(example)  # smoke test: a version that cannot predict is never served
    estimator, columns, types = fast_path_plan(pyfunc)
    keras, shape, dtype = tensor_plan(pyfunc)
    if keras is not None and not _tensor_fast_path_agrees(pyfunc, keras, example, dtype):
        keras = None  # no example to check it on, or it differs: MLflow answers everything
    run_id = pyfunc.metadata.run_id
    experiment_id, ranges = _run_facts(client, run_id, tracking_uri)
    return ServedModel(
        uri=model_uri,
        pyfunc=pyfunc,
        name=name,
        version=version,
        alias=alias,
        run_id=run_id,
        experiment_id=experiment_id,
        ranges=ranges,
        estimator=estimator,
        columns=columns,
        column_types=types,
        keras=keras,
        tensor_shape=shape,
        tensor_dtype=dtype,
        keras_flavor=keras_flavor,
    )


def _run_facts(client: Any, run_id: str | None, tracking_uri: str | None) -> tuple[Any, Any]:
    """(experiment id, input ranges) of the model's training run, as far as they are known."""
    import json

    import mlflow
    from mlflow.exceptions import MlflowException

    if client is None or not run_id:
        return None, None
    try:
        experiment_id = client.get_run(run_id).info.experiment_id
    except MlflowException:
        return None, None
    try:
        about = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="reference/profile.json", tracking_uri=tracking_uri
        )
        ranges = json.loads(Path(about).read_text()).get("ranges")
    except (MlflowException, OSError, ValueError):
        ranges = None  # trained before ranges were logged: /schema gives names and types
    return experiment_id, ranges


def latest_check(client: Any, model: ServedModel) -> dict[str, Any] | None:
    """The newest drift check (python -m mlstack.monitor) of the version being served."""
    if client is None or not model.name or not model.version:
        return None
    experiment = client.get_experiment_by_name(logstore.monitoring_experiment(model.name))
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{logstore.MODEL_VERSION_TAG}` = '{model.version}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    metrics = run.data.metrics
    return {
        "drift": bool(metrics.get("drift")),
        "reasons": run.data.tags.get(logstore.DRIFT_REASONS_TAG, ""),
        "rows": int(metrics.get("rows", 0)),
        "checked_at": time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(run.info.start_time / 1000)
        ),
        "window": run.data.tags.get(logstore.WINDOW_TAG),
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
    }


def open_client() -> Any:
    """An MlflowClient on training's store (MLFLOW_TRACKING_URI, else the embedded one)."""
    import mlflow

    from mlstack.settings import get_settings
    from mlstack.tracking import configure_tracking

    uri = configure_tracking(get_settings())
    # Named explicitly: this client (the server's one line to the store) needs no global URI.
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def missing_model_error(model_uri: str, exc: Any) -> UsageError | None:
    """The UsageError for an MlflowException saying the model or version does not exist
    (None for any other failure, which is not the user's to fix)."""
    if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
        return None
    return UsageError(
        f"cannot load {model_uri}: {exc.message.splitlines()[0]}; check the name and "
        "alias/version (and MLFLOW_TRACKING_URI)"
    )


@contextmanager
def user_errors(model_uri: str) -> Iterator[None]:
    """Turn 'no such model or version' from MLflow into a UsageError (exit 2)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        error = missing_model_error(model_uri, exc)
        if error is None:
            raise
        raise error from exc
