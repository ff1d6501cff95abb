"""What is monitored for each kind of model: the columns compared with the reference, how a
logged request becomes rows of those columns, and the live performance metric.

- wine: the 11 features and the predicted quality (all numeric); performance is rmse.
- digits: images are tensors, so each image becomes statistics an unseen handwriting moves:
  the mean ink, the share of inked pixels, the ink's centre and spread along each axis, its
  contrast, and the mean of each region of a 4 x 4 grid (16); plus the predicted class
  (categorical) and the model's confidence (its top probability). Performance is accuracy.

`inputs` are the columns that describe what the model was given (the domain classifier reads
them together); the drift decision itself is in mlstack.monitor.rules.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import orjson
import pandas as pd

from mlstack.data import WINE_FEATURES, WINE_TARGET

LABEL = "label"  # the true value's column, in references and in labels files
SEGMENT = "segment"  # in a reference: which population a row came from
SEGMENT_ORIGINAL, SEGMENT_LABELLED = "original", "labelled"
PREDICTION = "prediction"

REGIONS = tuple(f"region_{r}{c}" for r in range(4) for c in range(4))
IMAGE_FEATURES = (
    "ink_mean",
    "ink_share",
    "center_row",
    "center_col",
    "spread_row",
    "spread_col",
    "contrast",
    *REGIONS,
)


class Profile:
    """How one kind of model is monitored (subclasses: WineProfile, DigitsProfile)."""

    kind: ClassVar[str]
    numerical: ClassVar[tuple[str, ...]]
    categorical: ClassVar[tuple[str, ...]] = ()
    inputs: ClassVar[tuple[str, ...]]  # what the model was given (or statistics of it)
    prediction: ClassVar[str]  # the column whose drift is the prediction drift
    performance_metric: ClassVar[str]  # live, on labelled rows of a window
    heldout_metric: ClassVar[str]  # the training run's figure it is compared with

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column compared with the reference."""
        return (*self.numerical, *self.categorical)

    def rows(self, inputs: Any, predictions: Any) -> pd.DataFrame:
        """The monitored columns for inputs (a matrix or tensor of rows) and their predictions."""
        raise NotImplementedError

    def reference(
        self, inputs: Any, predictions: Any, labels: Any, segments: Any = None
    ) -> pd.DataFrame:
        """The reference table of a version: what it was evaluated on, as monitored columns
        plus the true label, and with `segments` which population each row came from
        (SEGMENT_ORIGINAL, SEGMENT_LABELLED: production rows labelled later)."""
        frame = self.rows(inputs, list(predictions))
        frame[LABEL] = np.asarray(labels)
        if segments is not None:
            frame[SEGMENT] = np.asarray(segments, dtype=object)
        return frame

    def performance(self, labels: pd.Series, rows: pd.DataFrame) -> float:
        """The live metric of `rows` (their predictions) against `labels`."""
        raise NotImplementedError

    def losses(self, labels: pd.Series, rows: pd.DataFrame) -> np.ndarray:
        """Each row's loss, whose mean the metric summarises (squared error, wrong class)."""
        raise NotImplementedError

    def matrix(self, body: str, content_type: str) -> np.ndarray:
        """The inputs of a logged request body as an array, one row (or image) per row."""
        raise NotImplementedError


class WineProfile(Profile):
    """The wine ElasticNet: 11 numeric features and a numeric prediction."""

    kind = "wine"
    numerical = (*WINE_FEATURES, PREDICTION)
    inputs = WINE_FEATURES
    prediction = PREDICTION
    performance_metric = "rmse"
    heldout_metric = "rmse"

    def rows(self, inputs: Any, predictions: Any) -> pd.DataFrame:
        """The features (a matrix in WINE_FEATURES order, or a table with those columns) and
        the prediction."""
        if isinstance(inputs, pd.DataFrame):
            inputs = inputs[list(WINE_FEATURES)].to_numpy(dtype="float64")
        frame = pd.DataFrame(np.asarray(inputs, dtype="float64"), columns=list(WINE_FEATURES))
        frame[PREDICTION] = np.asarray(predictions, dtype="float64").reshape(-1)
        return frame

    def performance(self, labels: pd.Series, rows: pd.DataFrame) -> float:
        """Root mean squared error."""
        return float(np.sqrt(np.mean(self.losses(labels, rows))))

    def losses(self, labels: pd.Series, rows: pd.DataFrame) -> np.ndarray:
        """Squared errors."""
        return (rows[PREDICTION].to_numpy(dtype="float64") - labels.to_numpy(dtype="float64")) ** 2

    def matrix(self, body: str, content_type: str) -> np.ndarray:
        """The features of any of MLflow's tabular forms (JSON or CSV), in WINE_FEATURES order:
        the serving fast path's parser, else MLflow's own."""
        from mlflow.pyfunc import scoring_server

        from mlstack.serving import fastpath

        if content_type.split(";")[0].strip() == "text/csv":
            table = scoring_server.parse_csv_input(io.StringIO(body))  # a stream, not a path
        else:
            payload = orjson.loads(body)
            matrix = fastpath.parse(payload, WINE_FEATURES, (float,) * len(WINE_FEATURES))
            if matrix is not None:
                return matrix
            table = scoring_server.infer_and_parse_data(payload)
        return pd.DataFrame(table)[list(WINE_FEATURES)].to_numpy(dtype="float64")


def image_features(images: np.ndarray) -> pd.DataFrame:
    """IMAGE_FEATURES of grayscale images (n, h, w) or (n, h, w, 1) with values in [0, 1].
    Positions are in units of the image's size (0 = top/left edge, 1 = bottom/right); the
    regions are a 4 x 4 grid of bands."""
    pictures = np.asarray(images, dtype="float64")
    if pictures.ndim == 4:
        pictures = pictures[..., 0]
    n, height, width = pictures.shape
    ink = pictures.sum(axis=(1, 2)) + 1e-9
    rows_at = (np.arange(height) / max(height - 1, 1))[None, :, None]
    cols_at = (np.arange(width) / max(width - 1, 1))[None, None, :]
    center_row = (pictures * rows_at).sum(axis=(1, 2)) / ink
    center_col = (pictures * cols_at).sum(axis=(1, 2)) / ink
    spread_row = np.sqrt((pictures * (rows_at - center_row[:, None, None]) ** 2).sum((1, 2)) / ink)
    spread_col = np.sqrt((pictures * (cols_at - center_col[:, None, None]) ** 2).sum((1, 2)) / ink)
    flat = pictures.reshape(n, -1)
    columns = {
        "ink_mean": flat.mean(axis=1),
        "ink_share": (flat > 0.5).mean(axis=1),
        "center_row": center_row,
        "center_col": center_col,
        "spread_row": spread_row,
        "spread_col": spread_col,
        "contrast": flat.max(axis=1) - flat.min(axis=1),
    }
    row_bands = np.array_split(np.arange(height), 4)
    col_bands = np.array_split(np.arange(width), 4)
    for r, rows in enumerate(row_bands):
        for c, cols in enumerate(col_bands):
            columns[f"region_{r}{c}"] = pictures[:, rows][:, :, cols].mean(axis=(1, 2))
    return pd.DataFrame(columns)


class DigitsProfile(Profile):
    """The digits CNN: image statistics, the predicted class and the model's confidence."""

    kind = "digits"
    numerical = (*IMAGE_FEATURES, "confidence")
    categorical = ("predicted_class",)
    inputs = IMAGE_FEATURES
    prediction = "predicted_class"
    performance_metric = "accuracy"
    heldout_metric = "test_accuracy"

    def rows(self, inputs: Any, predictions: Any) -> pd.DataFrame:
        """Image statistics, the predicted class (as text: a category) and the confidence."""
        frame = image_features(np.asarray(inputs))
        probabilities = np.asarray(predictions, dtype="float64").reshape(len(frame), -1)
        frame["confidence"] = probabilities.max(axis=1)
        frame["predicted_class"] = probabilities.argmax(axis=1).astype(str)
        return frame

    def performance(self, labels: pd.Series, rows: pd.DataFrame) -> float:
        """Accuracy: the share of rows whose predicted class is the label."""
        return float(1.0 - np.mean(self.losses(labels, rows)))

    def losses(self, labels: pd.Series, rows: pd.DataFrame) -> np.ndarray:
        """1 for a wrong class, 0 for a right one."""
        truth = labels.astype("int64").astype(str).to_numpy()
        return (rows["predicted_class"].to_numpy() != truth).astype("float64")

    def matrix(self, body: str, content_type: str) -> np.ndarray:
        """The image tensor of an `inputs` or `instances` body."""
        payload = orjson.loads(body)
        tensor = (
            payload.get("inputs", payload.get("instances")) if isinstance(payload, dict) else None
        )
        if tensor is None:
            raise ValueError("a digits request carries its images under 'inputs' or 'instances'")
        return np.asarray(tensor, dtype="float32")


PROFILES: dict[str, Profile] = {p.kind: p for p in (WineProfile(), DigitsProfile())}


@dataclass(frozen=True)
class ParsedLog:
    """The monitored rows of logged requests, with the request each row came from."""

    rows: pd.DataFrame  # request_id, row, timestamp, model_version + the profile's columns
    skipped_at: tuple[float, ...] = ()  # times of the requests that could not be read back

    @property
    def skipped(self) -> int:
        """Requests that could not be read back (logged, but not parseable by the profile)."""
        return len(self.skipped_at)


def unreadable_errors() -> tuple[type[Exception], ...]:
    """What reading a logged request back can raise for a body the profile does not take:
    malformed JSON or CSV (ValueError, which orjson's and Unicode errors are), a table without
    the profile's columns (KeyError), values of the wrong type or shape (TypeError,
    ValueError), and MLflow's own parser refusing the body (MlflowException). Anything else
    is a bug here, and stops the check."""
    from mlflow.exceptions import MlflowException

    return (ValueError, TypeError, KeyError, IndexError, MlflowException)


def rows_from_log(log: pd.DataFrame, profile: Profile) -> ParsedLog:
    """One row per predicted row of each logged request (request_id, its row index, time and
    model version, then the monitored columns). Requests are parsed into arrays and the table
    is built once: 10,000 requests in well under a second."""
    inputs, predictions, ids, positions, times, versions = [], [], [], [], [], []
    skipped: list[float] = []
    unreadable = unreadable_errors()
    for record in log.itertuples(index=False):
        try:
            matrix = profile.matrix(record.request, record.content_type)
            answer = np.asarray(orjson.loads(record.response)["predictions"], dtype="float64")
            if len(answer) != len(matrix):
                raise ValueError("predictions and rows differ in number")
        except unreadable:  # e.g. a Parquet body, logged as text: counted, never fatal
            skipped.append(float(record.timestamp))
            continue
        n = len(matrix)
        inputs.append(matrix)
        predictions.append(answer)
        ids.extend([record.request_id] * n)
        positions.extend(range(n))
        times.extend([record.timestamp] * n)
        versions.extend([str(record.model_version)] * n)
    if not inputs:
        empty = pd.DataFrame(columns=["request_id", "row", "timestamp", "model_version"])
        return ParsedLog(empty, tuple(skipped))
    frame = profile.rows(np.concatenate(inputs), np.concatenate(predictions))
    frame.insert(0, "request_id", ids)
    frame.insert(1, "row", np.asarray(positions, dtype="int64"))
    frame.insert(2, "timestamp", np.asarray(times, dtype="float64"))
    frame.insert(3, "model_version", versions)
    return ParsedLog(frame, tuple(skipped))


def wine_label_column(frame: pd.DataFrame) -> pd.DataFrame:
    """A wine labels file may name its label `quality`, as the training data does."""
    if LABEL not in frame and WINE_TARGET in frame:
        return frame.rename(columns={WINE_TARGET: LABEL})
    return frame
