"""The dev image on a real engine: SSH by key only, training over SSH logs to the tracking server
of the same network, host keys live in a volume (never in the image), JupyterLab needs its token.

Topology as in compose: a user-defined network holding the tracking server container (the
stack's server image) and the dev container, both published on 127.0.0.1 only.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests

from mlstack.stack import free_port
from tests.docker.engine import docker
from tests.helpers import wait_for

pytestmark = pytest.mark.docker

JUPYTER_TOKEN = uuid.uuid4().hex


def ssh_options(key: Path, port: int) -> list[str]:
    return [
        "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
    ]  # fmt: skip


def ssh(key: Path, port: int, user: str, command: str, *extra: str, timeout: float = 300):
    """Run `command` over SSH in the dev container; returns the completed process."""
    return subprocess.run(
        ["ssh", *ssh_options(key, port), *extra, f"{user}@127.0.0.1", command],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def network(docker_engine: str) -> Iterator[str]:
    name = f"mlstack-test-{uuid.uuid4().hex[:8]}"
    assert docker("network", "create", name).returncode == 0
    yield name
    docker("network", "rm", name)


@pytest.fixture(scope="module")
def tracking_server(server_image: str, network: str) -> Iterator[tuple[str, str]]:
    """(URI inside the network, URI from the host) of a server container on `network`."""
    name, port = f"tracking-{uuid.uuid4().hex[:8]}", free_port()
    started = docker(
        "run", "-d", "--rm", "--name", name, "--network", network,
        "-p", f"127.0.0.1:{port}:5000", server_image,
        "mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--workers", "1",
        "--backend-store-uri", "sqlite:////tmp/mlflow.db", "--serve-artifacts",
        "--artifacts-destination", "/tmp/artifacts",
        "--allowed-hosts", f"{name},{name}:5000,127.0.0.1:{port},localhost:{port}",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    host_uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{host_uri}/health"), 120, "the tracking server container")
        yield f"http://{name}:5000", host_uri
    finally:
        docker("rm", "-f", name)


def _answers(url: str, **params: str) -> int:
    try:
        return requests.get(url, params=params, timeout=3).status_code
    except requests.ConnectionError:
        return 0


def run_dev(dev_image, network, key, tracking_uri, data_dir, volume) -> tuple[str, int, int]:
    """Start a dev container; returns (name, ssh port, jupyter port) once sshd answers."""
    name, ssh_port, jupyter_port = f"dev-{uuid.uuid4().hex[:8]}", free_port(), free_port()
    started = docker(
        "run", "-d", "--init", "--name", name, "--network", network,
        "-e", f"MLFLOW_TRACKING_URI={tracking_uri}",
        "-e", f"SSH_AUTHORIZED_KEYS={key.with_suffix('.pub').read_text()}",
        "-e", f"JUPYTER_TOKEN={JUPYTER_TOKEN}",
        "-v", f"{volume}:/etc/ssh/host-keys", "-v", f"{data_dir}:/data:ro",
        "-p", f"127.0.0.1:{ssh_port}:22", "-p", f"127.0.0.1:{jupyter_port}:8888", dev_image,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    wait_for(
        lambda: ssh(key, ssh_port, "dockeruser", "true", timeout=30).returncode == 0,
        90,
        f"SSH into {name} ({docker('logs', name).stderr[-500:]})",
        interval=1,
    )
    return name, ssh_port, jupyter_port


@pytest.fixture(scope="module")
def dev(dev_image, network, client_key, tracking_server, data_dir) -> Iterator[dict]:
    volume = f"devhostkeys-{uuid.uuid4().hex[:8]}"
    name, ssh_port, jupyter_port = run_dev(
        dev_image, network, client_key, tracking_server[0], data_dir, volume
    )
    info = {"name": name, "ssh": ssh_port, "jupyter": jupyter_port, "volume": volume}
    try:
        yield info
    finally:
        docker("rm", "-f", info["name"])
        docker("volume", "rm", volume)


def test_training_over_ssh_lands_on_the_tracking_server(dev, client_key, tracking_server) -> None:
    trained = ssh(
        client_key, dev["ssh"], "dockeruser",
        "cd /opt/mlstack && python train.py --alpha 0.5 --l1-ratio 0.5 "
        "--data /data/winequality-red.csv",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    run_id = next(ln.split()[1] for ln in trained.stdout.splitlines() if ln.startswith("run "))
    run = mlflow.MlflowClient(tracking_uri=tracking_server[1]).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.5"
    assert 0.0 < run.data.metrics["rmse"] < 2.0
    who = ssh(
        client_key, dev["ssh"], "dockeruser", "id -u; git --version; echo $MLFLOW_TRACKING_URI"
    )
    uid, git, uri = who.stdout.splitlines()
    assert (uid, uri) == ("1000", tracking_server[0]) and git.startswith("git version")


def test_password_and_root_logins_are_refused(dev, client_key) -> None:
    config = docker("exec", dev["name"], "/usr/sbin/sshd", "-T").stdout
    for setting in (
        "permitrootlogin no",
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "authenticationmethods publickey",
    ):
        assert setting in config.splitlines(), setting
    # The server offers nothing but public keys, whatever the client asks for.
    password = ssh(
        client_key, dev["ssh"], "dockeruser", "true",
        "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive",
        timeout=30,
    )  # fmt: skip
    assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr
    # Root is refused even holding an authorized key.
    docker(
        "exec", dev["name"], "cp",
        "/etc/ssh/authorized_keys/dockeruser", "/etc/ssh/authorized_keys/root",
    )  # fmt: skip
    root = ssh(client_key, dev["ssh"], "root", "true", timeout=30)
    assert root.returncode == 255 and "Permission denied" in root.stderr


def test_host_keys_live_in_the_volume_not_the_image(
    dev, dev_image, network, client_key, tracking_server, data_dir
) -> None:
    baked = docker("run", "--rm", "--entrypoint", "sh", dev_image, "-c", "ls /etc/ssh")
    assert baked.returncode == 0 and "ssh_host_" not in baked.stdout

    def fingerprint() -> str:
        shown = docker(
            "exec", dev["name"], "ssh-keygen", "-lf", "/etc/ssh/host-keys/ssh_host_ed25519_key.pub"
        )
        assert shown.returncode == 0, shown.stderr
        return shown.stdout.split()[1]

    before = fingerprint()
    docker("rm", "-f", dev["name"])
    dev["name"], dev["ssh"], dev["jupyter"] = run_dev(
        dev_image, network, client_key, tracking_server[0], data_dir, dev["volume"]
    )
    assert fingerprint() == before  # a recreated container keeps its identity


def test_jupyterlab_needs_its_token(dev) -> None:
    url = f"http://127.0.0.1:{dev['jupyter']}/api/status"
    wait_for(lambda: _answers(url, token=JUPYTER_TOKEN) == 200, 120, "JupyterLab", interval=1)
    assert _answers(url) == 403
    assert _answers(url, token="wrong") == 403


def test_without_a_key_the_container_stops_with_the_fix(dev_image) -> None:
    proc = docker("run", "--rm", dev_image, timeout=120)
    assert proc.returncode == 2
    assert "no SSH public key: set SSH_AUTHORIZED_KEYS" in proc.stderr
