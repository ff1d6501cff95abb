"""Comparing a window with a reference: Evidently's data-drift report (the HTML and JSON people
read, and each column's p-value), plus a score per column that says how far it moved: the
Kolmogorov-Smirnov statistic for numeric columns (the largest gap between the two cumulative
distributions) and the total variation distance for categorical ones (half the summed gap
between the class frequencies). Both are 0 for identical distributions and 1 for disjoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlstack.monitor.profiles import P_VALUE, Profile


@dataclass(frozen=True)
class ColumnDrift:
    """One column's test."""

    column: str
    score: float
    p_value: float

    @property
    def drifted(self) -> bool:
        """True when the test rejects 'same distribution' at P_VALUE."""
        return self.p_value < P_VALUE


@dataclass
class DriftResult:
    """The window against the reference."""

    columns: dict[str, ColumnDrift]
    drift_share: float  # the share at which the window counts as drifted
    prediction: str
    snapshot: Any  # Evidently's Snapshot (save_html / save_json)

    @property
    def share(self) -> float:
        """The share of drifted columns."""
        return sum(c.drifted for c in self.columns.values()) / len(self.columns)

    @property
    def drift(self) -> bool:
        """True when at least `drift_share` of the columns drifted."""
        return self.share >= self.drift_share

    def worst(self, n: int = 3) -> list[ColumnDrift]:
        """The `n` columns that moved most (highest score)."""
        return sorted(self.columns.values(), key=lambda c: -c.score)[:n]

    def save(self, directory: Path) -> list[Path]:
        """Write report.html and report.json into `directory`; their paths."""
        html, json_path = directory / "report.html", directory / "report.json"
        self.snapshot.save_html(str(html))
        self.snapshot.save_json(str(json_path))
        return [html, json_path]


def _score(reference: pd.Series, current: pd.Series, categorical: bool) -> float:
    if categorical:
        ref = reference.value_counts(normalize=True)
        cur = current.value_counts(normalize=True)
        return float(ref.subtract(cur, fill_value=0.0).abs().sum() / 2)
    from scipy.stats import ks_2samp

    return float(ks_2samp(reference.to_numpy(), current.to_numpy()).statistic)


def compare(reference: pd.DataFrame, current: pd.DataFrame, profile: Profile) -> DriftResult:
    """Run Evidently's DataDriftPreset on the profile's columns (Kolmogorov-Smirnov for numeric
    columns, chi-square for categorical ones, p-value threshold P_VALUE)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(profile.columns)
    definition = DataDefinition(
        numerical_columns=list(profile.numerical), categorical_columns=list(profile.categorical)
    )
    report = Report(
        [
            DataDriftPreset(
                columns=columns,
                num_method="ks",
                cat_method="chisquare",
                threshold=P_VALUE,
                drift_share=profile.drift_share,
            )
        ]
    )
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    p_values = {
        metric["config"]["column"]: float(metric["value"])
        for metric in snapshot.dict()["metrics"]
        if metric["config"].get("type", "").endswith(":ValueDrift")
    }
    missing = set(columns) - set(p_values)
    if missing:
        raise RuntimeError(f"Evidently reported no drift test for {sorted(missing)}")
    results = {
        column: ColumnDrift(
            column=column,
            score=_score(reference[column], current[column], column in profile.categorical),
            # NaN: the test could not tell (e.g. a constant column): no evidence of drift.
            p_value=1.0 if np.isnan(p_values[column]) else p_values[column],
        )
        for column in columns
    }
    return DriftResult(results, profile.drift_share, profile.prediction, snapshot)
