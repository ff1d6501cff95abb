"""`mlflow run` on the prebuilt image refuses code from another commit than the run's."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlstack.errors import UsageError
from mlstack.provenance import GIT_COMMIT_TAG, check_container_store, image_code_tags

HEAD = "a" * 40
OLD = "b" * 40


def _image_env(commit: str, code_dir: Path, dirty: str = "false") -> dict[str, str]:
    return {
        "MLSTACK_IMAGE_COMMIT": commit,
        "MLSTACK_IMAGE_CODE_DIR": str(code_dir),
        "MLSTACK_IMAGE_DIRTY": dirty,
    }


def test_image_from_the_runs_commit_runs_and_is_recorded(tmp_path) -> None:
    tags = image_code_tags(_image_env(HEAD, tmp_path), {GIT_COMMIT_TAG: HEAD}, tmp_path)
    assert tags == {"mlstack.image.commit": HEAD, "mlstack.image.dirty": "false"}


def test_image_from_another_commit_is_refused_with_the_fix(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"from commit bbbbbbbbbbbb .*`make image`"):
        image_code_tags(_image_env(OLD, tmp_path), {GIT_COMMIT_TAG: HEAD}, tmp_path)


def test_image_with_uncommitted_changes_runs_with_a_warning(tmp_path, caplog) -> None:
    tags = image_code_tags(_image_env(HEAD, tmp_path, "true"), {GIT_COMMIT_TAG: HEAD}, tmp_path)
    assert tags["mlstack.image.dirty"] == "true"
    assert "uncommitted changes" in caplog.text


def test_code_that_came_with_the_run_is_not_checked(tmp_path) -> None:
    # --build-image copies the checkout to /mlflow/projects/code: current by construction.
    elsewhere = tmp_path / "mlflow-projects-code"
    elsewhere.mkdir()
    assert image_code_tags(_image_env(OLD, tmp_path), {GIT_COMMIT_TAG: HEAD}, elsewhere) == {}


def test_outside_the_image_nothing_is_checked(tmp_path) -> None:
    assert image_code_tags({}, {GIT_COMMIT_TAG: HEAD}, tmp_path) == {}


def test_the_store_check_applies_only_to_an_embedded_store_in_the_image(tmp_path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_text("")
    env = _image_env(HEAD, tmp_path)
    check_container_store(env, f"sqlite:///{db}")  # writable: fine
    check_container_store({}, "sqlite:////nonexistent/mlflow.db")  # not in the image: no check
    check_container_store(env, "http://127.0.0.1:5000")  # a server: no check
    # The refusal itself needs a store owned by another user: tests/docker/test_mlflow_run.py.
