"""Comparing a window with a version's reference: the decision of mlstack.monitor.rules (per
column, joint, performance), against the reference as a whole and against each population
it holds, plus Evidently's data-drift report for people to read (report.html).

A version retrained on labelled production rows was tested on a reference that mixes the
original held-out rows with held-out labelled ones. Traffic like either population is what
that version should consider normal, so a window is compared with the whole reference and
with each part of at least MIN_SEGMENT_ROWS rows, and the comparison that finds least is the
call (mlstack.monitor.rules.least_alarming): a clean window is not drift against a version
that has also seen shifted rows, and a window unlike every part still is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from mlstack.monitor.profiles import LABEL, SEGMENT, Profile
from mlstack.monitor.rules import (
    Columns,
    PerformanceInput,
    Thresholds,
    Verdict,
    decide,
    least_alarming,
)

MIN_SEGMENT_ROWS = 50


@dataclass
class DriftResult:
    """The window against the reference: the verdict and Evidently's report."""

    verdict: Verdict
    compared: list[Verdict]  # every comparison made (the whole reference, each part)
    snapshot: Any = None  # Evidently's Snapshot (save_html / save_json), when made

    @property
    def drift(self) -> bool:
        """The call."""
        return self.verdict.drift

    def save(self, directory: Path) -> list[Path]:
        """Write drift.json (every finding and threshold) and, with a report, report.html and
        report.json into `directory`; their paths."""
        findings = directory / "drift.json"
        findings.write_text(json.dumps(as_dict(self), indent=2, default=float))
        paths = [findings]
        if self.snapshot is not None:
            html, json_path = directory / "report.html", directory / "report.json"
            self.snapshot.save_html(str(html))
            self.snapshot.save_json(str(json_path))
            paths += [html, json_path]
        return paths


def as_dict(result: DriftResult) -> dict[str, Any]:
    """The verdict as plain data (what drift.json holds)."""
    from dataclasses import asdict

    verdict = result.verdict
    return {
        "drift": verdict.drift,
        "reasons": verdict.reasons(),
        "reference": verdict.reference,
        "reference_rows": verdict.reference_rows,
        "thresholds": asdict(verdict.thresholds),
        "columns": {
            name: asdict(c) | {"drifted": c.drifted} for name, c in verdict.columns.items()
        },
        "domain": None if verdict.domain is None else asdict(verdict.domain),
        "performance": None if verdict.performance is None else asdict(verdict.performance),
        "compared": [
            {"reference": v.reference, "rows": v.reference_rows, "drift": v.drift}
            for v in result.compared
        ],
    }


def parts(reference: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The reference as a whole, then each population in it with enough rows to compare."""
    whole = [("all", reference)]
    if SEGMENT not in reference or reference[SEGMENT].nunique() < 2:
        return whole
    return whole + [
        (str(name), rows)
        for name, rows in reference.groupby(SEGMENT, sort=True)
        if len(rows) >= MIN_SEGMENT_ROWS
    ]


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    profile: Profile,
    *,
    importance: Mapping[str, float] | None = None,
    thresholds: Thresholds | None = None,
    labelled: pd.DataFrame | None = None,
    heldout: float | None = None,
    report: bool = True,
) -> DriftResult:
    """Decide whether `current` drifted from `reference` (see the module docstring). With
    `labelled` rows of the window (monitored columns plus LABEL) and the version's `heldout`
    figure, performance is judged too. `report`: also run Evidently's report."""
    thresholds = thresholds or Thresholds()
    columns = Columns(
        numerical=profile.numerical,
        categorical=profile.categorical,
        inputs=profile.inputs,
        prediction=profile.prediction,
        importance=dict(importance or {}),
    )
    compared = []
    for name, rows in parts(reference):
        performance = None
        if labelled is not None and len(labelled) and heldout is not None:
            performance = PerformanceInput(
                metric=profile.performance_metric,
                live=profile.performance(labelled[LABEL], labelled),
                heldout=profile.performance(rows[LABEL], rows) if name != "all" else heldout,
                live_losses=profile.losses(labelled[LABEL], labelled),
                reference_losses=profile.losses(rows[LABEL], rows),
            )
        verdict = decide(rows, current, columns, thresholds, performance=performance)
        compared.append(replace(verdict, reference=name))
    result = DriftResult(least_alarming(compared), compared)
    if report:
        result.snapshot = evidently_report(reference, current, profile, thresholds)
    return result


def evidently_report(
    reference: pd.DataFrame, current: pd.DataFrame, profile: Profile, thresholds: Thresholds
) -> Any:
    """Evidently's DataDriftPreset on the profile's columns, for people to read: each column's
    distributions side by side and its test (Kolmogorov-Smirnov, chi-square) at the check's
    per-test p-value. Its own dataset-level vote is not the decision."""
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
                threshold=thresholds.family_alpha / (len(columns) + 1),
            )
        ]
    )
    return report.run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
