"""Refuse to run stale code from the project image under `mlflow run`.

Without `--build-image`, `mlflow run .` runs the prebuilt `mlstack-train` image as is, with the
code that was copied into it at `make image`. MLflow records the checkout's commit on the run
(`mlflow.source.git.commit`); the image carries the commit it was built from
(MLSTACK_IMAGE_COMMIT, set by `make image`). When they differ the run stops with exit 2 and the
fix. Code that came with the run (`--build-image`, which copies the checkout into
/mlflow/projects/code) is current by construction and is not checked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from mlstack.errors import UsageError

log = logging.getLogger(__name__)

GIT_COMMIT_TAG = "mlflow.source.git.commit"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def image_code_tags(
    env: Mapping[str, str], run_tags: Mapping[str, str], code_root: Path = PACKAGE_ROOT
) -> dict[str, str]:
    """Check the image's code against the run's commit; return tags recording what ran.

    Returns {} outside the project image or when the code did not come from the image.
    Raises UsageError when the image was built from another commit than the run's.
    """
    image_commit = env.get("MLSTACK_IMAGE_COMMIT")
    image_code_dir = env.get("MLSTACK_IMAGE_CODE_DIR")
    if not image_commit or not image_code_dir:
        return {}
    if code_root.resolve() != Path(image_code_dir).resolve():
        return {}  # the run brought its own code (--build-image or a mounted checkout)
    run_commit = run_tags.get(GIT_COMMIT_TAG)
    dirty = env.get("MLSTACK_IMAGE_DIRTY") == "true"
    if run_commit and image_commit != run_commit:
        raise UsageError(
            f"the image's code is from commit {image_commit[:12]} but this run is for "
            f"{run_commit[:12]}: rebuild it with `make image` (or use `make run`, which does), "
            "or pass --build-image"
        )
    if dirty:
        log.warning(
            "the image was built from uncommitted changes on top of %s; if you edited code "
            "since `make image`, this run uses the older code (`make run` rebuilds first)",
            image_commit[:12],
        )
    return {"mlstack.image.commit": image_commit, "mlstack.image.dirty": str(dirty).lower()}


def check_container_store(env: Mapping[str, str], tracking_uri: str) -> None:
    """In the project image, refuse an embedded store the container cannot write.

    `mlflow run` without MLFLOW_TRACKING_URI mounts the host's SQLite store into the container,
    owned by the host user; the container's dockeruser (uid 1000) can write it only when that
    is also the host user's uid. Fail before the run is touched, with the fix.
    """
    if not env.get("MLSTACK_IMAGE_CODE_DIR") or not tracking_uri.startswith("sqlite:"):
        return
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if not db.is_absolute():
        db = Path.cwd() / db
    target = db if db.exists() else db.parent
    if not os.access(target, os.W_OK):
        raise UsageError(
            f"the container cannot write the embedded store {db} (it belongs to another user): "
            "start a tracking server (make stack-up), export MLFLOW_TRACKING_URI="
            "http://127.0.0.1:5000 and pass -A network=host, or run python train.py natively"
        )
