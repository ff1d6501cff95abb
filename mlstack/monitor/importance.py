"""How much a version leans on each monitored input column, measured at training time and
logged with its drift reference, so a check can rank a moved column by what it means to the
model's output.

- A linear model: |coefficient| x the column's spread on the training rows, the size of the
  prediction's swing that column causes (so units do not matter: density's coefficient is
  huge because density barely varies).
- Anything else (the digits CNN): permutation. One group of inputs at a time (for images,
  one cell of the 4 x 4 grid the monitor's `region_rc` columns describe) is swapped with the
  same group of other rows, and the mean change of the output is its importance (for class
  probabilities, the total variation distance).

Importances are shares: they sum to 1 over the columns measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from mlstack.monitor.rules import spread


def shares(raw: Mapping[str, float]) -> dict[str, float]:
    """`raw` importances scaled to sum to 1 (all equal when every one is 0)."""
    total = float(sum(raw.values()))
    if total <= 0:
        return {column: 1.0 / len(raw) for column in raw}
    return {column: float(value) / total for column, value in raw.items()}


def linear_importance(coefficients: np.ndarray, inputs: pd.DataFrame) -> dict[str, float]:
    """|coefficient| x winsorized standard deviation of each column of `inputs`, as shares."""
    coefficients = np.asarray(coefficients, dtype="float64").reshape(-1)
    if len(coefficients) != inputs.shape[1]:
        raise ValueError(f"{len(coefficients)} coefficients for {inputs.shape[1]} columns")
    return shares(
        {
            str(column): abs(coef) * spread(inputs[column].to_numpy(dtype="float64"))
            for coef, column in zip(coefficients, inputs.columns, strict=True)
        }
    )


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    inputs: np.ndarray,
    groups: Mapping[str, np.ndarray],
    *,
    seed: int = 0,
) -> dict[str, float]:
    """For each named boolean mask over one input's shape (a column, an image region), the mean
    change of `predict`'s output when the masked entries come from another row, as shares.
    Outputs of several values (class probabilities) change by their total variation distance;
    single values by the absolute difference. One `predict` call for all groups."""
    inputs = np.asarray(inputs)
    partner = np.random.default_rng(seed).permutation(len(inputs))
    swapped = []
    for mask in groups.values():
        copy = inputs.copy()
        copy[:, mask] = inputs[partner][:, mask]
        swapped.append(copy)
    outputs = np.asarray(predict(np.concatenate([inputs, *swapped]))).reshape(
        (len(groups) + 1) * len(inputs), -1
    )
    base, rest = outputs[: len(inputs)], outputs[len(inputs) :]
    scale = 0.5 if base.shape[1] > 1 else 1.0
    raw = {
        name: float(
            scale * np.abs(rest[i * len(inputs) : (i + 1) * len(inputs)] - base).sum(1).mean()
        )
        for i, name in enumerate(groups)
    }
    return shares(raw)


def region_masks(image_shape: tuple[int, ...], grid: int = 4) -> dict[str, np.ndarray]:
    """Boolean masks of the `grid` x `grid` cells of an image (h, w[, channels]), named as the
    monitor's columns: region_00 (top left) .. region_33."""
    height, width = image_shape[0], image_shape[1]
    masks = {}
    for r, rows in enumerate(np.array_split(np.arange(height), grid)):
        for c, cols in enumerate(np.array_split(np.arange(width), grid)):
            mask = np.zeros(image_shape, dtype=bool)
            mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
            masks[f"region_{r}{c}"] = mask
    return masks
