"""Run by an OLDER MLflow's Python (the upgrade tests' throwaway venvs), against that version's
server: it logs what a team's store holds and writes what it logged as JSON for the test.

    python old_client.py WINE_CSV OUT_JSON      (MLFLOW_TRACKING_URI: the old server)

Only mlflow, scikit-learn and pandas: nothing from this project, which the old venv lacks.
"""

from __future__ import annotations

import json
import sys

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from sklearn.linear_model import ElasticNet

MODEL = "wine"


def main(wine_csv: str, out: str) -> None:
    client = MlflowClient()
    frame = pd.read_csv(wine_csv, sep=";")
    features, target = frame.drop(columns=["quality"]), frame["quality"]
    experiment_id = client.create_experiment("upgrade-wine", tags={"team": "old"})
    logged = {"runs": {}, "deleted_run": None}
    for i, alpha in enumerate((0.1, 0.3, 0.5)):
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"old-{i}") as run:
            model = ElasticNet(alpha=alpha, l1_ratio=0.5, random_state=0).fit(features, target)
            mlflow.log_params({"alpha": alpha, "l1_ratio": 0.5})
            for step in range(5):
                mlflow.log_metric("rmse", 1.0 / (step + 1) + alpha, step=step)
            mlflow.set_tag("made_by", mlflow.__version__)
            mlflow.log_text(f"notes of run {i}", "notes.txt")
            # artifact_path: the one argument both 2.x and 3.x accept.
            mlflow.sklearn.log_model(
                model, artifact_path="model", registered_model_name=MODEL,
                input_example=features.head(2),
            )  # fmt: skip
            logged["runs"][run.info.run_id] = {
                "alpha": str(alpha),
                "rmse": [1.0 / (s + 1) + alpha for s in range(5)],
                "predictions": model.predict(features.head(5)).tolist(),
            }
    versions = sorted(client.search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version))
    client.set_registered_model_alias(MODEL, "champion", versions[1].version)
    client.set_registered_model_alias(MODEL, "challenger", versions[2].version)
    logged["versions"] = {v.version: v.run_id for v in versions}
    logged["champion"] = versions[1].version
    with mlflow.start_run(experiment_id=experiment_id, run_name="old-deleted") as run:
        mlflow.log_metric("x", 1.0)
    client.delete_run(run.info.run_id)
    logged["deleted_run"] = run.info.run_id
    logged["mlflow_version"] = mlflow.__version__
    with open(out, "w") as fh:
        json.dump(logged, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
