"""What the web client sends: wine rows checked against the model's inputs, a CSV batch, and
digit images made the way scikit-learn's 8x8 digits were (so the CNN sees what it learnt on)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlstack.data import csv_separator  # the one separator rule, shared with training's loader

BATCH_ROWS = 1000  # rows per request: well under the server's 5 MB body limit
GRID = 8  # the digits model's image side


@dataclass(frozen=True)
class Feature:
    """One input column of a tabular model, with its training range when the server knows it."""

    name: str
    low: float | None = None
    median: float | None = None
    high: float | None = None

    @property
    def default(self) -> float:
        """What the form starts at: the training median, else the middle of the range, else 0."""
        if self.median is not None:
            return self.median
        if self.low is not None and self.high is not None:
            return (self.low + self.high) / 2
        return 0.0


def features_of(schema: dict[str, Any]) -> list[Feature]:
    """The named inputs of a /schema answer (empty for tensor models)."""
    return [
        Feature(c["name"], c.get("low"), c.get("median"), c.get("high"))
        for c in schema.get("columns", [])
    ]


def check_row(values: dict[str, float], features: list[Feature]) -> list[str]:
    """Problems with one form row, one sentence each (empty when it can be sent)."""
    problems = []
    for f in features:
        value = values.get(f.name)
        if value is None or not np.isfinite(value):
            problems.append(f"{f.name}: give a number")
        elif f.low is not None and f.high is not None and not f.low <= value <= f.high:
            problems.append(
                f"{f.name}: {value:g} is outside the training data's range "
                f"[{f.low:g}, {f.high:g}] (its central 99%)"
            )
    return problems


def read_csv(data: bytes, features: list[Feature]) -> pd.DataFrame:
    """A batch CSV (`;` or `,` separated, as exported by the UCI file or pandas) with every
    feature by name; ValueError naming what is wrong."""
    text = data.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise ValueError("The CSV is empty.")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=csv_separator(text))
    except (pd.errors.ParserError, UnicodeError) as exc:
        raise ValueError(f"The file is not a readable CSV ({exc}).") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise ValueError(
            f"The CSV lacks {len(missing)} column(s): {', '.join(missing)}. It needs the "
            f"{len(features)} features by name in its header."
        )
    table = frame[[f.name for f in features]]
    bad = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if bad:
        raise ValueError(f"Column(s) {', '.join(bad)} hold values that are not numbers.")
    if table.isna().any().any():
        raise ValueError("Some cells are empty; every feature needs a value in every row.")
    if table.empty:
        raise ValueError("The CSV has a header but no rows.")
    return table


def batches(table: pd.DataFrame, size: int = BATCH_ROWS) -> list[dict[str, Any]]:
    """`dataframe_split` bodies of at most `size` rows each."""
    return [
        {"dataframe_split": {"columns": list(table.columns),
                             "data": table.iloc[i : i + size].to_numpy().tolist()}}
        for i in range(0, len(table), size)
    ]  # fmt: skip


def image_from_upload(data: bytes) -> np.ndarray:
    """An uploaded picture of one digit as the model's input: (8, 8), values in [0, 1].

    Like scikit-learn's digits (32x32 bitmaps of thick strokes, each 4x4 block counted into
    0..16): grey, dark ink on light paper turned into bright ink, the ink's bounding box made
    square and centred, strokes thickened to about a tenth of the digit's size (a pen line is
    thinner than those bitmaps' strokes), then averaged down to 8x8 blocks. ValueError when it
    is not an image.
    """
    from PIL import Image, ImageFilter, UnidentifiedImageError

    try:
        picture = Image.open(io.BytesIO(data)).convert("L")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError("The file is not an image (PNG or JPEG).") from exc
    pixels = np.asarray(picture, dtype="float64") / 255.0
    if pixels.mean() > 0.5:  # dark ink on light paper
        pixels = 1.0 - pixels
    inked = np.argwhere(pixels > 0.2)
    if len(inked) == 0:
        return np.zeros((GRID, GRID))
    (top, left), (bottom, right) = inked.min(axis=0), inked.max(axis=0) + 1
    side = max(bottom - top, right - left)
    square = np.zeros((side, side))
    r, c = (side - (bottom - top)) // 2, (side - (right - left)) // 2
    square[r : r + bottom - top, c : c + right - left] = pixels[top:bottom, left:right]
    margin = side // 6  # sklearn's digits leave a border around the ink
    framed = Image.fromarray((np.pad(square, margin) * 255).astype("uint8"))
    stroke = max(3, (side // 10) | 1)  # odd, as the filter needs
    resized = framed.filter(ImageFilter.MaxFilter(stroke)).resize(
        (GRID * 4, GRID * 4), Image.Resampling.BOX
    )
    blocks = np.asarray(resized, dtype="float64").reshape(GRID, 4, GRID, 4).mean(axis=(1, 3))
    return np.clip(blocks / 255.0, 0.0, 1.0)


def digits_payload(image: np.ndarray) -> dict[str, Any]:
    """The `inputs` body for one (8, 8) image: shape (1, 8, 8, 1)."""
    return {"inputs": np.asarray(image, dtype="float64").reshape(1, GRID, GRID, 1).tolist()}
