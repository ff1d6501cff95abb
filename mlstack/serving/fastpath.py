"""Well-formed tabular JSON straight to a NumPy matrix; None means "let MLflow handle it".

The fast path never produces an error of its own: anything it does not recognise exactly
(extra keys, params, a missing column, a value of the wrong type, ragged rows) returns None,
and the request is answered by MLflow's scoring code instead, with MLflow's own error.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np

# The JSON value types each column type takes: exact types, so a bool (an int in Python, not
# in MLflow's schema) is refused; an int is a safe double.
_ACCEPTED = {float: {int, float}, int: {int}}


def _rows_from_split(value: Any, columns: tuple[str, ...]) -> list[list[Any]] | None:
    if not isinstance(value, dict) or not set(value) <= {"columns", "data", "index"}:
        return None
    names, data = value.get("columns"), value.get("data")
    if not isinstance(names, list) or not isinstance(data, list):
        return None
    position = {n: i for i, n in enumerate(names)}
    if len(position) != len(names) or any(c not in position for c in columns):
        return None
    picks = [position[c] for c in columns]
    width = len(names)
    if any(not isinstance(row, list) or len(row) != width for row in data):
        return None
    if picks == list(range(width)):
        return data  # the signature's columns, in its order: the usual case, no copy
    return [[row[i] for i in picks] for row in data]


def _rows_from_records(value: Any, columns: tuple[str, ...]) -> list[list[Any]] | None:
    if not isinstance(value, list) or not all(isinstance(rec, dict) for rec in value):
        return None
    try:
        return [[rec[c] for c in columns] for rec in value]
    except KeyError:
        return None


def _rows_from_columns(value: Any, columns: tuple[str, ...]) -> list[list[Any]] | None:
    if not isinstance(value, dict) or any(not isinstance(value.get(c), list) for c in columns):
        return None
    lengths = {len(v) for v in value.values() if isinstance(v, list)}
    if len(lengths) != 1 or len(value) != sum(isinstance(v, list) for v in value.values()):
        return None
    return [list(row) for row in zip(*(value[c] for c in columns), strict=True)]


def _types_fit(rows: list[list[Any]], types: tuple[type, ...]) -> bool:
    """Every cell is a JSON number its column takes (checked per set of types, not per cell)."""
    if all(kind is float for kind in types):
        return set(map(type, chain.from_iterable(rows))) <= _ACCEPTED[float]
    return all(
        set(map(type, column)) <= _ACCEPTED[kind]
        for column, kind in zip(zip(*rows, strict=True), types, strict=True)
    )


def parse(payload: Any, columns: tuple[str, ...], types: tuple[type, ...]) -> np.ndarray | None:
    """The request's rows as a float64 matrix in `columns` order, or None (see module doc)."""
    if not isinstance(payload, dict) or len(payload) != 1:
        return None  # params, or several data keys: MLflow decides
    ((key, value),) = payload.items()
    if key == "dataframe_split":
        rows = _rows_from_split(value, columns)
    elif key == "dataframe_records":
        rows = _rows_from_records(value, columns)
    elif key in ("inputs", "instances"):
        rows = (
            _rows_from_columns(value, columns)
            if isinstance(value, dict)
            else _rows_from_records(value, columns)
        )
    else:
        return None
    if not rows or not _types_fit(rows, types):
        return None
    # Column-major, as pandas hands a DataFrame's values to scikit-learn: BLAS sums in another
    # order for a row-major matrix, and the predictions would differ in the last digit.
    return np.array(rows, dtype=np.float64, order="F")


def parse_tensor(payload: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """An `inputs` / `instances` tensor body as an array of the signature's `dtype` and `shape`
    (-1: any size), or None (see module doc): ragged nesting, anything but numbers (MLflow
    casts booleans; the fast path leaves them to it), another number of dimensions or size."""
    if not isinstance(payload, dict) or len(payload) != 1:
        return None
    ((key, value),) = payload.items()
    if key not in ("inputs", "instances") or not isinstance(value, list) or not value:
        return None
    try:
        tensor = np.asarray(value)
    except ValueError:  # ragged
        return None
    if tensor.dtype.kind not in "fi" or tensor.ndim != len(shape):
        return None
    if any(want not in (-1, got) for want, got in zip(shape, tensor.shape, strict=True)):
        return None
    try:  # as MLflow builds it: a number out of an integer type's range is its error
        return np.array(value, dtype=dtype)
    except (ValueError, OverflowError, TypeError):
        return None
