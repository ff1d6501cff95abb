"""experiment.ipynb: committed without outputs, and executes top to bottom on a temporary store."""

from __future__ import annotations

import json
import os

import mlflow
import pytest

from mlstack.settings import Settings
from tests.helpers import PROJ_ROOT, SHARED_WINE_CSV

NOTEBOOK = PROJ_ROOT / "experiment.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    # The file's JSON, not nbformat: importing nbformat's validator costs ~3 s of every run.
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.slow
@pytest.mark.notebook
def test_notebook_executes_on_a_temporary_store(
    settings: Settings, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    # The kernel inherits this process's environment: point it at the temporary store.
    for key in [k for k in os.environ if k.startswith(("MLFLOW_", "MLSTACK_"))]:
        monkeypatch.delenv(key)
    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)
    if SHARED_WINE_CSV.exists():
        monkeypatch.setenv("MLSTACK_WINE_DATA", str(SHARED_WINE_CSV))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(PROJ_ROOT)}}
    ).execute()

    text = "\n".join(
        out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert f"tracking to: {settings.embedded_tracking_uri}" in text
    assert "champion is version" in text
    assert "curl -s http://127.0.0.1:5001/invocations" in text
    assert "clean   window: drift no" in text and "shifted window: drift yes" in text
    uri = settings.embedded_tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions("name='wine'")
    # One version per alpha the notebook trains, each from its own finished run with its metrics.
    runs = {v.version: client.get_run(v.run_id) for v in versions}
    assert sorted(float(r.data.params["alpha"]) for r in runs.values()) == [0.05, 0.5, 1.0]
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    rmse = {version: r.data.metrics["rmse"] for version, r in runs.items()}
    assert all(0 < value < 2 for value in rmse.values()), rmse
    # The champion is the first version with the lowest held-out rmse (it moves only on an
    # improvement), and the notebook loaded and printed that one.
    champion = client.get_model_version_by_alias("wine", "champion")
    best = min(sorted(rmse, key=int), key=rmse.__getitem__)
    assert str(champion.version) == str(best), rmse
    assert champion.tags["promotion.decision"] == "promoted"
    assert f"champion is version {champion.version}\n" in text
    monitoring = client.get_experiment_by_name("wine-monitoring")
    assert len(client.search_runs([monitoring.experiment_id])) == 4
