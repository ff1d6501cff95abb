"""docker/install.py, the one way images get packages: groups resolve to pyproject's pins
(extras that name extras expanded), unknown groups are refused, and the list of MLflow
dependencies the server image leaves out names real dependencies of the pinned MLflow."""

from __future__ import annotations

import importlib.util
import tomllib
from importlib.metadata import requires

import pytest

from tests.helpers import PROJ_ROOT

spec = importlib.util.spec_from_file_location("install", PROJ_ROOT / "docker" / "install.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)

PYPROJECT = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())


def test_core_is_the_project_dependencies() -> None:
    assert install.pins(PYPROJECT, ["core"]) == PYPROJECT["project"]["dependencies"]


def test_extras_naming_extras_are_expanded_once() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    stack = install.pins(PYPROJECT, ["stack"])
    assert set(extras["tracking-server"]) <= set(stack)
    assert not [line for line in stack if line.startswith("mlstack[")]
    dev = install.pins(PYPROJECT, ["core", "dev"])
    assert len(dev) == len(set(dev))  # mlflow==... is in train and tracking-server: once
    assert {"tensorflow-cpu", "mlflow", "jupyterlab", "pytest"} <= {install.name_of(r) for r in dev}


def test_unknown_group_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(SystemExit, match="unknown group 'gpu'; known: core, tensorflow"):
        install.pins(PYPROJECT, ["gpu"])


def test_every_pin_is_a_constraint() -> None:
    constraints = install.all_pins(PYPROJECT)
    assert all("==" in line and not line.startswith("mlstack") for line in constraints)
    project = PYPROJECT["project"]
    listed = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    assert set(constraints) == {line for line in listed if not line.startswith("mlstack[")}
    assert len(constraints) == len(set(constraints))


def test_the_slim_server_leaves_out_real_dependencies_of_mlflow() -> None:
    # A name that is no longer a dependency would make the list silently wrong.
    mlflow_needs = {install.name_of(line) for line in requires("mlflow") or []}
    assert install.DATA_SCIENCE <= mlflow_needs
    assert {"flask", "sqlalchemy", "alembic"} <= mlflow_needs - install.DATA_SCIENCE


def test_stripped_test_suites_are_installed_packages() -> None:
    for package in install.SHIPPED_TEST_SUITES:
        assert importlib.util.find_spec(package) is not None, package
