"""Each model version's drift reference: what it was evaluated on (its held-out split, at most
REFERENCE_ROWS rows), as the monitored columns, its predictions and the true labels, each row
marked with the population it came from (the original data, or production rows labelled
later: mlstack.monitor.drift compares a window with each); and how much the version leans on
each input column (mlstack.monitor.importance). Logged with the training run, so any version
can be monitored later without the original data."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlstack.errors import UsageError
from mlstack.logstore import read_parquet, write_parquet
from mlstack.monitor.profiles import PROFILES, Profile

ARTIFACT_DIR = "reference"
TABLE = "reference.parquet"
ABOUT = "profile.json"
REFERENCE_ROWS = 5000
KIND_TAG = "mlstack.model_kind"
RANGE_QUANTILES = (0.005, 0.995)


def log_reference(
    profile: Profile,
    frame: pd.DataFrame,
    heldout: float,
    training: pd.DataFrame | None = None,
    importance: dict[str, float] | None = None,
    importance_method: str | None = None,
) -> None:
    """Log `frame` (a profile's reference table) and what it is, to the active run; with the
    `training` inputs (named columns), also their ranges, which the model server hands to
    clients (GET /schema): `low` and `high` hold the central 99% of the training rows (the
    0.5% and 99.5% quantiles), so a few corrupt values cannot stretch them (the team's UCI
    copy has volatile acidity 1185 for 1.185), and `median`. `importance`: each input column's
    share of the model's sensitivity, and how it was measured."""
    import mlflow

    sample = frame.sample(REFERENCE_ROWS, random_state=0) if len(frame) > REFERENCE_ROWS else frame
    about: dict[str, Any] = {
        "kind": profile.kind,
        "rows": len(sample),
        profile.heldout_metric: heldout,
    }
    if importance:
        about["importance"] = {str(k): float(v) for k, v in importance.items()}
        about["importance_method"] = importance_method or ""
    if training is not None:
        about["ranges"] = {
            str(column): {
                "low": float(values.quantile(RANGE_QUANTILES[0])),
                "median": float(values.median()),
                "high": float(values.quantile(RANGE_QUANTILES[1])),
            }
            for column, values in training.items()
        }
    with tempfile.TemporaryDirectory(prefix="mlstack-reference-") as tmp:
        write_parquet(sample.reset_index(drop=True), Path(tmp) / TABLE)
        (Path(tmp) / ABOUT).write_text(json.dumps(about, indent=2))
        mlflow.log_artifacts(tmp, ARTIFACT_DIR)
    mlflow.set_tag(KIND_TAG, profile.kind)


@dataclass(frozen=True)
class Reference:
    """A version's reference table, its profile, its held-out figure and its importances."""

    frame: pd.DataFrame
    profile: Profile
    heldout: float | None
    run_id: str
    importance: dict[str, float] = field(default_factory=dict)  # empty: not measured


def load_reference(client: Any, name: str, version: str) -> Reference:
    """The reference of model `name` version `version`, or a UsageError saying how to get one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mv = client.get_model_version(name, version)
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path=ARTIFACT_DIR, tracking_uri=client.tracking_uri
            )
        )
    except (MlflowException, OSError) as exc:
        raise UsageError(
            f"version {version} of {name} has no drift reference (its run {mv.run_id} was "
            "trained before references were logged): train a new version with "
            f"--register-as {name}, then monitor that"
        ) from exc
    about = json.loads((local / ABOUT).read_text())
    profile = PROFILES[about["kind"]]
    return Reference(
        frame=read_parquet(local / TABLE),
        profile=profile,
        heldout=about.get(profile.heldout_metric),
        run_id=mv.run_id,
        importance=about.get("importance", {}),
    )
