"""Labelled data for retraining: the true values people (or a feedback system) learn after a
prediction, joined with the prediction log to recover each labelled row's inputs.

Label files (CSV or Parquet: request_id, label or quality, optional row; read as the monitor's
`--labels` is, by mlstack.monitor.window.read_label_file) are dropped into
`<labels dir>/<model>/`. A retraining reads the new ones, keeps each joined row with its inputs
in `<labels dir>/<model>/used/<file>.parquet` and moves the file itself to `used/` too: a
file is new exactly once, and every later retraining still learns from the rows it brought.
Ids that no prediction log of the model holds are left out and counted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlstack.data import WINE_FEATURES, WINE_TARGET
from mlstack.logstore import read_parquet, write_parquet
from mlstack.monitor.profiles import LABEL, Profile
from mlstack.monitor.window import read_label_file

USED = "used"
SUFFIXES = (".csv", ".parquet")
PIXELS = tuple(f"p{i}" for i in range(64))  # the 8x8 digits; square images of any size work


@dataclass
class Labelled:
    """Labelled rows as training data: a wine table (features + quality) or digits (x, y)."""

    kind: str
    table: pd.DataFrame  # wine: WINE_FEATURES + quality; digits: PIXELS + label
    files: list[Path] = field(default_factory=list)
    unknown_ids: int = 0

    def __len__(self) -> int:
        return len(self.table)

    def training_data(self) -> Any:
        """What train() takes as `extra`: the wine table, or (images, labels) for digits."""
        if self.kind == "wine":
            return self.table
        pixels = self.table.drop(columns=[LABEL]).to_numpy("float32")
        side = int(round(pixels.shape[1] ** 0.5))
        return pixels.reshape(-1, side, side, 1), self.table[LABEL].to_numpy("int64")


def new_files(labels_dir: Path, model: str) -> list[Path]:
    """Label files of `model` not used by a retraining yet."""
    folder = labels_dir / model
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in SUFFIXES)


def _empty(kind: str) -> pd.DataFrame:
    columns = [*WINE_FEATURES, WINE_TARGET] if kind == "wine" else [*PIXELS, LABEL]
    return pd.DataFrame(columns=columns)


def _as_table(kind: str, inputs: np.ndarray, labels: list) -> pd.DataFrame:
    if kind == "wine":
        table = pd.DataFrame(np.asarray(inputs, dtype="float64"), columns=list(WINE_FEATURES))
        table[WINE_TARGET] = np.asarray(labels, dtype="int64")
        return table
    pixels = np.asarray(inputs, dtype="float32").reshape(len(labels), -1)
    table = pd.DataFrame(pixels, columns=[f"p{i}" for i in range(pixels.shape[1])])
    table[LABEL] = np.asarray(labels, dtype="int64")
    return table


def join(logs: pd.DataFrame, labels: pd.DataFrame, profile: Profile) -> tuple[pd.DataFrame, int]:
    """(the labelled rows' training table, how many labels had no logged request)."""
    by_id = logs.drop_duplicates("request_id").set_index("request_id")
    known = labels[labels["request_id"].isin(by_id.index)]
    inputs, values = [], []
    for request_id, group in known.groupby("request_id", sort=False):
        record = by_id.loc[request_id]
        matrix = profile.matrix(record["request"], record["content_type"])
        inputs.append(matrix[group["row"].to_numpy()])
        values.extend(group[LABEL].to_list())
    if not inputs:
        return _empty(profile.kind), len(labels)
    return _as_table(profile.kind, np.concatenate(inputs), values), len(labels) - len(known)


def gather_new(labels_dir: Path, model: str, profile: Profile, logs: pd.DataFrame) -> Labelled:
    """The new label files of `model`, joined with its prediction logs."""
    files = new_files(labels_dir, model)
    if not files:
        return Labelled(profile.kind, _empty(profile.kind))
    labels = pd.concat([read_label_file(f) for f in files], ignore_index=True)
    table, unknown = join(logs, labels, profile)
    return Labelled(profile.kind, table, files, unknown)


def used(labels_dir: Path, model: str, kind: str) -> Labelled:
    """Every labelled row earlier retrainings used (kept with their inputs)."""
    tables = [read_parquet(p) for p in sorted((labels_dir / model / USED).glob("*.parquet"))]
    if not tables:
        return Labelled(kind, _empty(kind))
    return Labelled(kind, pd.concat(tables, ignore_index=True))


def mark_used(labels_dir: Path, model: str, labelled: Labelled) -> None:
    """Keep the new rows with their inputs under used/, and move their files there."""
    folder = labels_dir / model / USED
    folder.mkdir(parents=True, exist_ok=True)
    if len(labelled):
        stem = labelled.files[0].stem if len(labelled.files) == 1 else "labels"
        write_parquet(labelled.table, folder / f"{stem}-{pd.Timestamp.now():%Y%m%dT%H%M%S}.parquet")
    for path in labelled.files:
        shutil.move(str(path), folder / path.name)
