"""Deterministic, documented distribution shifts to test drift monitoring against.

Neither shift is downloaded: both are made from data this project already has, the same way
for the same seed, so tests and the simulator (`python -m mlstack.monitor.simulate`) can rely
on them.

- `warm_region(frame)`: wines of a warmer growing region. Riper, healthier grapes at harvest
  mean more sugar to ferment, so more alcohol (+1.2 % vol) and a lower density
  (-0.0012 g/cm3); less acid (fixed acidity -1.0 g/L, citric acid -0.08 g/L, not below 0,
  pH +0.12); less volatile acidity (-0.15 g/L) and, in that region's cellars, more sulphates
  (+0.12 g/L). These are 0.4 to 1.1 standard deviations of the red-wine data. The tasters
  mark such low-acid ("flabby") wines down a point, so a `quality` column, when present,
  is one lower (not below 3): the relation between chemistry and quality changes, which is
  what retraining on labelled rows can learn. A designed scenario, not measured data: with
  the labels unchanged, the wine ElasticNet's predictions barely move under this shift (its
  coefficients cancel), and retraining could not improve on it.
- `new_handwriting(images)`: digits written by other hands, in the spirit of unseen-style
  sets such as DIDA's historical digits: thicker strokes (a soft dilation), a forward slant
  (shear of 0.1 to 0.3 pixels per row), a shift of up to one pixel, and fainter ink on greyer
  paper (contrast x0.6-0.8, background +0.1-0.2). Each image draws its own amounts from a
  seeded generator. Labels are unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# name: amount added (warm_region)
WARM_REGION_SHIFT = {
    "alcohol": 1.2,
    "density": -0.0012,
    "fixed acidity": -1.0,
    "citric acid": -0.08,
    "pH": 0.12,
    "volatile acidity": -0.15,
    "sulphates": 0.12,
}
WARM_REGION_QUALITY = -1  # the tasters' verdict on low-acid wines
MIN_QUALITY = 3


def warm_region(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a wine table (the 11 UCI features, any other columns kept) as if its wines
    came from a warmer region (see the module docstring)."""
    shifted = frame.copy()
    for column, delta in WARM_REGION_SHIFT.items():
        shifted[column] = shifted[column] + delta
    for column in ("citric acid", "volatile acidity"):
        shifted[column] = shifted[column].clip(lower=0.0)
    if "quality" in shifted:
        shifted["quality"] = (shifted["quality"] + WARM_REGION_QUALITY).clip(lower=MIN_QUALITY)
    return shifted


def new_handwriting(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Images (n, 8, 8) or (n, 8, 8, 1), values in [0, 1], redrawn in a new hand (see the
    module docstring); same shape, values in [0, 1], float32."""
    from scipy import ndimage

    squeeze = images.ndim == 4
    pictures = images[..., 0] if squeeze else images
    rng = np.random.default_rng(seed)
    out = np.empty(pictures.shape, dtype=np.float32)
    for i, picture in enumerate(pictures.astype(np.float64)):
        thick = np.maximum(picture, 0.7 * ndimage.grey_dilation(picture, size=(2, 2)))
        shear = rng.uniform(0.1, 0.3)
        d_row, d_col = rng.integers(-1, 2, size=2)
        # output (r, c) <- input (r - d_row, c - d_col + shear * (r - 3.5))
        matrix = np.array([[1.0, 0.0], [shear, 1.0]])
        offset = np.array([-d_row, -d_col - shear * 3.5])
        moved = ndimage.affine_transform(thick, matrix, offset=offset, order=1, cval=0.0)
        contrast, paper = rng.uniform(0.6, 0.8), rng.uniform(0.1, 0.2)
        out[i] = np.clip(paper + contrast * moved, 0.0, 1.0)
    return out[..., None] if squeeze else out


# More shifts, for calibrating the drift decision (benchmarks/monitoring.py --calibrate) and
# for `simulate --shift`: each isolates one kind of change the monitor must see.

WINE_RELATED = ("fixed acidity", "citric acid", "density", "pH")  # |correlation| 0.5-0.7


def move_columns(frame: pd.DataFrame, amounts: dict[str, float]) -> pd.DataFrame:
    """A copy of `frame` with each named column moved by its amount (in the column's units),
    kept at or above 0 for columns that cannot be negative (every wine feature)."""
    shifted = frame.copy()
    for column, amount in amounts.items():
        shifted[column] = (shifted[column] + amount).clip(lower=0.0)
    return shifted


def broken_relations(
    frame: pd.DataFrame, columns: tuple[str, ...] = WINE_RELATED, seed: int = 0
) -> pd.DataFrame:
    """A copy of `frame` in which each of `columns` is shuffled across rows on its own, as a
    join on the wrong key would match lab results to other wines: every column keeps exactly
    its distribution (no test of one column can see it), the relations between them (acidity
    and pH, sugar and density) are gone."""
    rng = np.random.default_rng(seed)
    shuffled = frame.copy()
    for column in columns:
        shuffled[column] = shuffled[column].to_numpy()[rng.permutation(len(frame))]
    return shuffled


def _as_pictures(images: np.ndarray) -> tuple[np.ndarray, bool]:
    squeeze = images.ndim == 4
    return (images[..., 0] if squeeze else images).astype(np.float64), squeeze


def thicker_strokes(images: np.ndarray, weight: float = 0.7) -> np.ndarray:
    """Images drawn with a broader pen (a soft 2 x 2 dilation); same shape, float32."""
    from scipy import ndimage

    pictures, squeeze = _as_pictures(images)
    dilated = np.stack([ndimage.grey_dilation(p, size=(2, 2)) for p in pictures])
    out = np.maximum(pictures, weight * dilated).astype(np.float32)
    return out[..., None] if squeeze else out


def slanted(images: np.ndarray, shear: float = 0.25) -> np.ndarray:
    """Images slanted forward by `shear` pixels per row about the centre; same shape."""
    from scipy import ndimage

    pictures, squeeze = _as_pictures(images)
    centre = (pictures.shape[1] - 1) / 2
    matrix = np.array([[1.0, 0.0], [shear, 1.0]])
    offset = np.array([0.0, -shear * centre])
    out = np.stack(
        [ndimage.affine_transform(p, matrix, offset=offset, order=1, cval=0.0) for p in pictures]
    )
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    return out[..., None] if squeeze else out


def erased_region(images: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Images with one block blanked, as a scanner's dead strip or a folded corner would."""
    pictures, squeeze = _as_pictures(images)
    out = pictures.copy()
    out[:, rows, cols] = 0.0
    out = out.astype(np.float32)
    return out[..., None] if squeeze else out
