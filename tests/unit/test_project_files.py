"""Project files: MLflow's own loader parses MLproject, every entry point's rendered command runs
and logs (the way `mlflow run` launches it), and conda.yaml takes its pins from pyproject."""

from __future__ import annotations

import shlex
import tomllib

import mlflow
import pytest
import yaml
from mlflow.projects.utils import load_project

from mlstack.settings import Settings
from mlstack.tracking import configure_tracking, ensure_experiment
from tests.helpers import PROJ_ROOT, run_entry

ENTRY_POINTS = {"main", "digits", "monitor", "promote"}


@pytest.fixture(scope="module")
def project():
    return load_project(str(PROJ_ROOT))


def test_mlflow_loads_the_project(project) -> None:
    assert project.name == "mlstack"
    assert set(project._entry_points) == ENTRY_POINTS
    assert project.docker_env["image"] == "mlstack-train"
    # A variable listed by name must be set on the host or `mlflow run` refuses to start:
    # list only fixed values (MLflow forwards MLFLOW_TRACKING_URI itself).
    assert all(isinstance(entry, list) for entry in project.docker_env["environment"])
    assert set(project.get_entry_point("main").parameters) >= {"alpha", "l1_ratio", "data"}


@pytest.mark.slow
def test_every_flag_in_a_command_exists_on_its_script(project, tmp_path) -> None:
    for name in ("main", "digits", "monitor"):
        entry = project.get_entry_point(name)
        params = {k: "x" for k, p in entry.parameters.items() if p.default is None}
        argv = shlex.split(entry.compute_command(params, str(tmp_path)))
        script = argv[1:3] if argv[1] == "-m" else argv[1:2]  # python -m MODULE, or a file
        script_help = run_entry([*script, "--help"], env=None, timeout=120).stdout
        for flag in (a for a in argv if a.startswith("--")):
            assert flag in script_help, f"{name}: {flag} not accepted by {' '.join(script)}"


def test_conda_yaml_installs_the_project_so_pins_come_from_pyproject() -> None:
    pyproject = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())
    conda = yaml.safe_load((PROJ_ROOT / "conda.yaml").read_text())
    (pip_section,) = [d for d in conda["dependencies"] if isinstance(d, dict)]
    assert pip_section["pip"] == ["--editable .[train]"]
    assert "train" in pyproject["project"]["optional-dependencies"]
    python = [d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert python == ["python=3.11"] and pyproject["project"]["requires-python"] == ">=3.11,<3.13"


def test_every_group_is_pinned() -> None:
    pyproject = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())
    groups = {"core": pyproject["project"]["dependencies"]}
    groups |= pyproject["project"]["optional-dependencies"]
    for group, requirements in groups.items():
        # Every requirement is pinned, or pulls in another extra of this project.
        unpinned = [r for r in requirements if "==" not in r and not r.startswith("mlstack[")]
        assert not unpinned, f"[{group}] has unpinned requirements: {unpinned}"


def _run_like_mlflow_run(
    project, entry_point: str, params: dict[str, str], settings: Settings, cli_env: dict, tmp_path
):
    """Launch an entry point as `mlflow run` does: it creates the run and logs the MLproject
    parameters as typed, then starts the rendered command with MLFLOW_RUN_ID set."""
    entry = project.get_entry_point(entry_point)
    command = entry.compute_command(params, str(tmp_path))
    configure_tracking(settings)
    experiment_id = ensure_experiment(entry_point, settings)
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id)
    merged = {k: p.default for k, p in entry.parameters.items()} | params
    for key, value in merged.items():
        client.log_param(run.info.run_id, key, value)
    env = cli_env | {
        "MLFLOW_RUN_ID": run.info.run_id,
        "MLFLOW_EXPERIMENT_ID": experiment_id,
        "MLFLOW_TRACKING_URI": settings.embedded_tracking_uri,
    }
    proc = run_entry(shlex.split(command)[1:], env)
    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
    return mlflow.get_run(run.info.run_id), proc


@pytest.mark.slow
def test_main_entry_point_with_defaults_logs_a_run(
    project, settings: Settings, cli_env: dict, tmp_path
) -> None:
    run, _ = _run_like_mlflow_run(project, "main", {}, settings, cli_env, tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.5" and run.data.params["data"] == ""
    assert run.data.params["data_source"] == settings.wine_data  # "" meant "the default"
    assert {"rmse", "mae", "r2", "train_rmse"} <= set(run.data.metrics)


@pytest.mark.slow
def test_main_tolerates_params_typed_differently_by_mlflow_run(
    project, settings: Settings, cli_env: dict, tmp_path
) -> None:
    run, _ = _run_like_mlflow_run(project, "main", {"alpha": ".5"}, settings, cli_env, tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == ".5"  # as typed; not rejected as a changed value


@pytest.mark.slow
def test_digits_entry_point_with_defaults_meets_accuracy_target(
    project, settings: Settings, cli_env: dict, tmp_path
) -> None:
    run, _ = _run_like_mlflow_run(project, "digits", {}, settings, cli_env, tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "15"
    assert run.data.metrics["test_accuracy"] >= 0.97
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "accuracy")
    assert [m.step for m in history] == list(range(15))


@pytest.mark.slow
def test_promote_entry_point_moves_the_alias(
    project, settings: Settings, cli_env: dict, tmp_path
) -> None:
    for alpha in ("0.01", "5.0"):  # v1 becomes champion, v2 (worse) only challenger
        _run_like_mlflow_run(
            project, "main", {"alpha": alpha, "register_as": "wine"}, settings, cli_env, tmp_path
        )
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("wine", "champion").version) == "1"
    _, proc = _run_like_mlflow_run(
        project, "promote", {"version": "2"}, settings, cli_env, tmp_path
    )
    assert "wine@champion now points at v2 (was v1)" in proc.stdout
    assert str(client.get_model_version_by_alias("wine", "champion").version) == "2"
