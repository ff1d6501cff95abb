"""Static checks of the compose stack and images: compose v2 renders it (with generated
credentials), ports stay on 127.0.0.1, secrets are required, every service builds a target of
the one Dockerfile, and Dockerfiles pass hadolint. Running them is the Docker tier's job."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

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


def test_minio_profile_creates_the_bucket_once_minio_is_healthy(env_file: Path) -> None:
    proc = _compose_config(env_file, "--profile", "minio")
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    assert services["minio"]["healthcheck"]["test"]
    assert services["create-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    # Without the profile the bucket job starts on SeaweedFS alone.
    assert services["create-bucket"]["depends_on"]["minio"]["required"] is False


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


def test_server_image_tag_is_the_mlflow_pin() -> None:
    # A bump of MLflow in pyproject.toml must rename the image compose runs (and the tests build).
    project = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())["project"]
    (mlflow_pin,) = [r for r in project["optional-dependencies"]["tracking-server"]
                     if r.startswith("mlflow==")]  # fmt: skip
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    tags = {s["image"] for s in services.values() if "mlstack-mlflow-server" in s.get("image", "")}
    assert tags == {f"mlstack-mlflow-server:{mlflow_pin.split('==')[1]}"}


def test_missing_secret_is_refused_with_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / ".env"
    empty.write_text("")
    proc = _compose_config(empty)
    assert proc.returncode != 0
    assert "set it in .env (make env)" in proc.stderr


# A variable whose value is a credential, by its name (AWS_SECRET_ACCESS_KEY, JUPYTER_TOKEN...).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PASSPHRASE|CREDENTIAL", re.I)
# `${VAR}`, `${VAR:?msg}` / `${VAR?msg}` (required), or `${VAR:-}` (empty default: "off"): the
# value comes from .env or the shell. A non-empty default (`${VAR:-hunter2}`) is a literal.
REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*|:?-)?\}")
ANY_REFERENCE = re.compile(r"\$\{[^}]*\}")
# The password part of `scheme://user:password@host`, once each reference is one character.
URL_PASSWORD = re.compile(r"://[^/:@\s]+:(?P<password>[^/@\s]+)@")


def _as_map(entries: dict | list | None) -> dict[str, str | None]:
    """A compose `environment` or `build.args`, written as a map or as a list of K=V, as a map
    (a bare `K` in a list, like `K:` with no value in a map, passes the shell's value through)."""
    if isinstance(entries, dict):
        return {str(k): None if v is None else str(v) for k, v in entries.items()}
    pairs = (str(e).split("=", 1) for e in entries or [])
    return {p[0]: p[1] if len(p) == 2 else None for p in pairs}


def literal_secrets(compose_text: str) -> list[str]:
    """`service: VAR` for every credential a compose file spells out instead of taking it from
    the environment: a secret-named variable (environment or build args) that is not a plain
    reference, or a URL whose password is not one."""
    found = []
    for name, service in (yaml.safe_load(compose_text).get("services") or {}).items():
        build = service.get("build")
        values = _as_map(service.get("environment"))
        if isinstance(build, dict):
            values |= _as_map(build.get("args"))
        for key, value in values.items():
            if value is None:
                continue
            if SECRET_NAME.search(key) and not REFERENCE.fullmatch(value):
                found.append(f"{name}: {key}")
            refs = ANY_REFERENCE.findall(value)
            masked = ANY_REFERENCE.sub("\0", value)
            for url in URL_PASSWORD.finditer(masked):
                nth = masked[: url.start("password")].count("\0")  # which reference it is
                if url["password"] != "\0" or not REFERENCE.fullmatch(refs[nth]):
                    found.append(f"{name}: {key} (password in a URL)")
    return found


def test_no_secret_in_the_compose_file() -> None:
    assert literal_secrets(COMPOSE.read_text()) == []


@pytest.mark.parametrize(
    ("environment", "flagged"),
    [
        ("{POSTGRES_PASSWORD: x}", "db: POSTGRES_PASSWORD"),
        ('["POSTGRES_PASSWORD=x"]', "db: POSTGRES_PASSWORD"),
        ('{AWS_SECRET_ACCESS_KEY: "${S3_SECRET_KEY:-minioadmin}"}', "db: AWS_SECRET_ACCESS_KEY"),
        ("{DB_URI: 'postgresql://mlflow:x@postgres/mlflow'}", "db: DB_URI (password in a URL)"),
    ],
    ids=["map", "list", "default", "url"],
)
def test_literal_secrets_are_found(environment: str, flagged: str) -> None:
    assert literal_secrets(f"services:\n  db:\n    environment: {environment}\n") == [flagged]


def test_secret_references_pass() -> None:
    compose = """
services:
  db:
    environment:
      - POSTGRES_PASSWORD=${POSTGRES_PASSWORD:?set it}
      - JUPYTER_TOKEN=${JUPYTER_TOKEN:-}
      - MLFLOW_TOKEN
      - DB_URI=postgresql://${U:-mlflow}:${POSTGRES_PASSWORD}@postgres/mlflow
"""
    assert literal_secrets(compose) == []


def test_no_secret_in_images() -> None:
    """No ENV or ARG of a Dockerfile names a credential (both stay in the image's history)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "*Dockerfile"],
        capture_output=True, text=True, check=True, cwd=PROJ_ROOT,
    ).stdout.split()  # fmt: skip
    assert len(listed) > 1  # ours and the Docker tier's stand-ins
    for dockerfile in (PROJ_ROOT / name for name in listed):
        text = re.sub(r"\\\n", " ", dockerfile.read_text())
        for instruction in re.findall(r"^(?:ENV|ARG)\s+(.+)$", text, re.M):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?:=|\s|$)", instruction)
            assert not [n for n in names if SECRET_NAME.search(n)], (dockerfile, instruction)


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
