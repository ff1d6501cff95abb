"""Docker tier: a real engine started by tests/docker/engine.py. No mocks.

Outside CI a machine where the engine cannot start skips this tier with one line saying why;
with CI=true that is a failure. Images are built once per session, the way `make image`,
`make dev-image` and compose build them.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlstack.stack import NativeStack
from tests.docker import engine
from tests.helpers import PROJ_ROOT, SHARED_WINE_CSV, make_wine_frame, write_uci_csv
from tests.integration.conftest import client_env, running_stack


def pinned(name: str) -> str:
    """The version pyproject.toml pins distribution `name` at (one, in every group naming it),
    so a bump there is what these tests check."""
    project = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    (version,) = {ln.split("==", 1)[1].strip() for ln in lines if ln.split("==")[0] == name}
    return version


TRAIN_IMAGE = "mlstack-train"
DEV_IMAGE = "mlstack-dev"
SERVER_IMAGE = f"mlstack-mlflow-server:{pinned('mlflow')}"  # the tag docker-compose.yml names
SERVE_IMAGE = "mlstack-serve-core"  # compose's name with SERVE_DEPS=core (the default)
SERVE_TF_IMAGE = "mlstack-serve-tensorflow"
PIPELINES_IMAGE = "mlstack-pipelines"
CLIENT_IMAGE = "mlstack-client"


def source_commit() -> tuple[str, str]:
    """(HEAD commit, "true"/"false" for uncommitted changes) of the checkout, as `make image`."""
    git = ["git", "-C", str(PROJ_ROOT)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip(), str(bool(status.stdout.strip())).lower()


def host_env(tracking_uri: str, tmp_path: Path, data_dir: Path) -> dict[str, str]:
    """A host shell as the README has it: MLFLOW_TRACKING_URI set (and nothing about S3 or the
    database), the container-readable wine data, and the private engine's DOCKER_HOST."""
    env = client_env(tracking_uri, tmp_path, data_dir / "winequality-red.csv")
    return env | {"DOCKER_HOST": engine.DOCKER_HOST}


def build(tag: str, *args: str) -> str:
    """`docker build` from the project root with the source commit; fail the test on error."""
    commit, dirty = source_commit()
    proc = engine.docker(
        "build", "-q", "--build-arg", f"SOURCE_COMMIT={commit}",
        "--build-arg", f"SOURCE_DIRTY={dirty}", "-t", tag, *args, str(PROJ_ROOT),
        timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tag


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """The private engine's DOCKER_HOST, with the stand-in base images built. An engine this
    session started is stopped at its end (images stay in its data root, so the next start
    takes seconds); MLSTACK_KEEP_DOCKER=1 leaves it running, as does one started before."""
    try:
        started = engine.up()
    except (engine.EngineError, OSError, TimeoutError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the Docker engine could not start: {exc}")
        pytest.skip(f"no Docker engine here: {exc}")
    yield engine.DOCKER_HOST
    if started and os.environ.get("MLSTACK_KEEP_DOCKER") != "1":
        engine.stop()


@pytest.fixture(scope="session")
def train_image(docker_engine: str) -> str:
    """mlstack-train, as `make image` builds it."""
    return build(TRAIN_IMAGE, "--target", "train")


@pytest.fixture(scope="session")
def dev_image(train_image: str) -> str:
    """mlstack-dev, as `make dev-image` builds it."""
    return build(DEV_IMAGE, "--target", "dev")


@pytest.fixture(scope="session")
def server_image(docker_engine: str) -> str:
    """The tracking server image of the compose stack."""
    return build(SERVER_IMAGE, "--target", "mlflow-server")


@pytest.fixture(scope="session")
def serve_image(train_image: str) -> str:
    """Our model server image for scikit-learn models, as compose builds it by default."""
    return build(SERVE_IMAGE, "--target", "serve")


@pytest.fixture(scope="session")
def serve_tf_image(train_image: str) -> str:
    """Our model server image with TensorFlow (compose with SERVE_DEPS=tensorflow)."""
    return build(SERVE_TF_IMAGE, "--target", "serve", "--build-arg", "SERVE_DEPS=tensorflow")


@pytest.fixture(scope="session")
def pipelines_image(train_image: str) -> str:
    """The Prefect server and runner image of compose's pipelines profile."""
    return build(PIPELINES_IMAGE, "--target", "pipelines")


@pytest.fixture(scope="session")
def client_image(docker_engine: str) -> str:
    """The web client's image (compose profile client)."""
    return build(CLIENT_IMAGE, "--target", "client")


@pytest.fixture(scope="session")
def native_stack(docker_engine: str) -> Iterator[NativeStack]:
    """The native tracking stack (PostgreSQL, S3, MLflow server) on the host's 127.0.0.1."""
    with running_stack() as stack:
        yield stack


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A directory containers can read (uid 1000), holding winequality-red.csv: the team's
    real copy when ../shared has it, else a synthetic one in the same format."""
    path = tmp_path_factory.mktemp("container-data")
    for p in (path, *path.parents):
        if p == Path("/") or p.stat().st_mode & 0o005 == 0o005:
            break
        p.chmod(p.stat().st_mode | 0o005)  # pytest's base temp is 0700
    csv = path / "winequality-red.csv"
    if SHARED_WINE_CSV.exists():
        csv.write_bytes(SHARED_WINE_CSV.read_bytes())
    else:
        write_uci_csv(make_wine_frame(), csv)
    csv.chmod(0o644)
    return path


@pytest.fixture(scope="session")
def client_key(tmp_path_factory) -> Path:
    """A fresh ed25519 key pair for SSH logins (the .pub file sits beside it)."""
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The first Docker test also pays for the engine and the image builds (its fixtures):
    from nothing that is about 10 minutes on our 2-core machines, over the suite's per-test
    limit, so this tier gets a longer one."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(2400))
