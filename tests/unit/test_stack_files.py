"""Static checks of the compose stack and images: compose v2 renders it (with generated
credentials), ports stay on 127.0.0.1, secrets are required, every service builds a target of
the one Dockerfile, and Dockerfiles pass hadolint. Running them is the Docker tier's job."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlstack.entrypoints import envfile
from tests.helpers import PROJ_ROOT, compose_binary

BIN = Path(sys.executable).parent
COMPOSE = PROJ_ROOT / "docker-compose.yml"


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    return envfile.write(PROJ_ROOT / ".env.example", tmp_path / ".env")


def _compose_config(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE), "--env-file", str(env_file), *args,
         "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, cwd=PROJ_ROOT,
    )  # fmt: skip


def test_make_env_writes_fresh_private_secrets(tmp_path: Path) -> None:
    first = envfile.write(PROJ_ROOT / ".env.example", tmp_path / "a")
    second = envfile.write(PROJ_ROOT / ".env.example", tmp_path / "b")
    assert "=CHANGE_ME" not in first.read_text()
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    secrets_a = dict(ln.split("=", 1) for ln in first.read_text().splitlines() if "PASSWORD" in ln)
    secrets_b = dict(ln.split("=", 1) for ln in second.read_text().splitlines() if "PASSWORD" in ln)
    assert secrets_a.keys() == secrets_b.keys() and all(
        secrets_a[k] != secrets_b[k] for k in secrets_a
    )
    with pytest.raises(FileExistsError, match="already exists"):
        envfile.write(PROJ_ROOT / ".env.example", first)


def test_compose_renders_with_loopback_ports_and_health_gates(env_file: Path) -> None:
    proc = _compose_config(env_file)
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "s3", "create-bucket", "mlflow"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes on {port['host_ip']}"
    for name in ("postgres", "s3", "mlflow"):
        assert services[name]["healthcheck"]["test"], name
    assert services["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy", "required": True},
        "create-bucket": {"condition": "service_completed_successfully", "required": True},
    }
    assert services["create-bucket"]["depends_on"]["s3"]["condition"] == "service_healthy"
    env = services["mlflow"]["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow/artifacts"
    assert "--serve-artifacts" in " ".join(services["mlflow"]["command"])
    assert "--allowed-hosts" in " ".join(services["mlflow"]["command"])


@pytest.mark.parametrize(
    ("profile", "service"),
    [
        ("auth", "mlflow-auth"),
        ("minio", "minio"),
        ("dev", "dev"),
        ("serve", "serve"),
        ("pipelines", "prefect"),
    ],
)
def test_optional_profiles_render(env_file: Path, profile: str, service: str) -> None:
    proc = _compose_config(env_file, "--profile", profile)
    assert proc.returncode == 0, proc.stderr
    assert service in json.loads(proc.stdout)["services"]


def test_every_profile_builds_from_the_one_dockerfile_on_loopback(env_file: Path) -> None:
    targets = re.findall(r"^FROM \S+ AS (\S+)$", (PROJ_ROOT / "Dockerfile").read_text(), re.M)
    profiles = [
        a for p in ("auth", "dev", "serve", "pipelines", "client") for a in ("--profile", p)
    ]
    proc = _compose_config(env_file, *profiles)
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes on {port['host_ip']}"
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(built) == {
        "create-bucket", "mlflow", "mlflow-auth", "dev", "serve", "prefect", "client"
    }  # fmt: skip
    assert services["client"]["depends_on"]["serve"]["condition"] == "service_healthy"
    for name, build in built.items():
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        assert build["target"] in targets, name
    assert services["serve"]["image"] == "mlstack-serve-core"
    assert services["serve"]["build"]["args"] == {"SERVE_DEPS": "core"}


def test_missing_secret_is_refused_with_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / ".env"
    empty.write_text("")
    proc = _compose_config(empty)
    assert proc.returncode != 0
    assert "set it in .env (make env)" in proc.stderr


def test_no_secret_in_compose_or_images() -> None:
    text = COMPOSE.read_text() + "".join(p.read_text() for p in PROJ_ROOT.glob("**/Dockerfile"))
    assert "PASSWORD=" not in text and "SECRET_KEY=" not in text


@pytest.mark.parametrize(
    "dockerfile",
    sorted(
        p.relative_to(PROJ_ROOT) for p in PROJ_ROOT.glob("**/Dockerfile") if ".venv" not in p.parts
    ),
    ids=str,
)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "hadolint"), str(dockerfile)], capture_output=True, text=True, cwd=PROJ_ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_devcontainer_opens_the_compose_dev_service(env_file: Path) -> None:
    spec = json.loads((PROJ_ROOT / ".devcontainer/devcontainer.json").read_text())
    proc = _compose_config(env_file, "--profile", "dev")
    assert proc.returncode == 0, proc.stderr
    dev = json.loads(proc.stdout)["services"][spec["service"]]
    assert spec["workspaceFolder"] in {v["target"] for v in dev["volumes"]}
    assert dev["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert {p["target"]: p["host_ip"] for p in dev["ports"]} == {22: "127.0.0.1", 8888: "127.0.0.1"}
    assert dev["build"]["target"] == "dev"
