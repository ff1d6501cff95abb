"""The SFTP artifact store on real services (`up --artifacts sftp`): Debian's OpenSSH sshd,
internal-sftp only, key-only, chrooted. A run's artifacts and a registered model go through the
MLflow server's proxy onto the SFTP server and load back, with no SSH key on the client; a
server answering with another host key than the pinned one is refused; passwords, root, other
keys and shells are refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlstack.stack import NativeStack
from mlstack.stack.sftp import SFTP_USER
from tests.helpers import SHARED_WINE_CSV, make_wine_frame, run_entry, wait_for, write_uci_csv
from tests.integration.conftest import client_env, stack_state_dir, start_stack

LOAD_BACK = """
import sys, mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_csv(sys.argv[2], sep=";").drop(columns=["quality"]).head(3)
print(len(model.predict(frame)))
"""


@pytest.fixture(scope="module")
def sftp_stack() -> Iterator[NativeStack]:
    """A stack whose artifacts live on SFTP; its root under a root-owned directory (sshd's
    chroot rule), not under /tmp."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: the SFTP tier needs root (sshd chroots its user)")
        pytest.skip("the SFTP store needs root (sshd chroot)")
    base = Path("/var/lib/mlstack-tests")
    base.mkdir(mode=0o755, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="sftp-", dir=base))
    root.chmod(0o755)
    stack = start_stack(stack_state_dir(), artifacts="sftp", sftp_root=str(root))
    try:
        yield stack
    finally:
        stack.down(purge=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def wine_csv_path(tmp_path_factory) -> Path:
    """The team's wine CSV, else a generated one."""
    if SHARED_WINE_CSV.exists():
        return SHARED_WINE_CSV
    return write_uci_csv(make_wine_frame(1600, seed=5), tmp_path_factory.mktemp("d") / "w.csv")


def _chroot(stack: NativeStack) -> Path:
    return stack.sftp.root / "chroot"


def test_artifacts_land_on_the_sftp_server_and_load_back(sftp_stack, tmp_path, wine_csv_path):
    env = client_env(sftp_stack.config.tracking_uri, tmp_path, wine_csv_path)
    env["HOME"] = str(tmp_path / "home")  # a client with no ~/.ssh at all
    client = MlflowClient(
        sftp_stack.config.tracking_uri, registry_uri=sftp_stack.config.tracking_uri
    )
    run = client.create_run(client.create_experiment("sftp-files"))
    client.log_text(run.info.run_id, "over sftp", "notes/hello.txt")
    on_disk = list(_chroot(sftp_stack).rglob("hello.txt"))
    assert len(on_disk) == 1 and on_disk[0].read_text() == "over sftp"
    assert on_disk[0].stat().st_uid != 0  # written by the chrooted user, not root
    back = client.download_artifacts(run.info.run_id, "notes/hello.txt", str(tmp_path))
    assert Path(back).read_text() == "over sftp"

    trained = run_entry(["train.py", "--register-as", "sftp-wine"], env, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert list(_chroot(sftp_stack).rglob("MLmodel")), "the model's files are not on SFTP"
    loaded = run_entry(["-c", LOAD_BACK, "models:/sftp-wine@champion", str(wine_csv_path)], env)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "3"


def test_a_server_with_another_host_key_is_refused(sftp_stack, tmp_path, monkeypatch) -> None:
    known = sftp_stack.sftp.client_home / ".ssh" / "known_hosts"
    pinned = known.read_text()
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)],
                   check=True)  # fmt: skip
    other = " ".join((tmp_path / "impostor.pub").read_text().split()[:2])
    port = sftp_stack.config.sftp_port
    client = MlflowClient(
        sftp_stack.config.tracking_uri, registry_uri=sftp_stack.config.tracking_uri
    )
    run_id = client.create_run(client.create_experiment("sftp-hostkey")).info.run_id
    try:
        # The pin now names a key the server does not have: as if another machine answered.
        known.write_text(f"127.0.0.1 {other}\n[127.0.0.1]:{port} {other}\n")
        sftp_stack.stop_service("mlflow")
        sftp_stack.start_service("mlflow")
        # The server answers 500 every time; the client need not retry for minutes to see it.
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        with pytest.raises(Exception):  # noqa: B017  (MLflow wraps the refusal in its own kinds)
            client.log_text(run_id, "must not land", "refused.txt")
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        assert not list(_chroot(sftp_stack).rglob("refused.txt"))
        # The traceback reaches the log just after the 500 does.
        wait_for(lambda: "Bad host key from server" in sftp_stack.mlflow.log_file.read_text(
            errors="replace"), 30, "the refusal in the MLflow server's log")  # fmt: skip
    finally:
        known.write_text(pinned)
        sftp_stack.stop_service("mlflow")
        sftp_stack.start_service("mlflow")
    client.log_text(run_id, "lands again", "ok.txt")
    assert list(_chroot(sftp_stack).rglob("ok.txt"))


def _login(stack: NativeStack, user: str, **auth):
    import paramiko

    ssh = paramiko.SSHClient()
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.load_host_keys(str(stack.sftp.client_home / ".ssh" / "known_hosts"))
    ssh.connect("127.0.0.1", port=stack.config.sftp_port, username=user, timeout=10,
                allow_agent=False, look_for_keys=False, **auth)  # fmt: skip
    return ssh


def test_only_the_mlflow_servers_key_gets_in_and_only_to_sftp(sftp_stack, tmp_path) -> None:
    import paramiko  # here, not at collection: the rest of the session never loads it

    key = paramiko.RSAKey.from_private_key_file(str(sftp_stack.sftp.client_home / ".ssh/id_rsa"))
    with pytest.raises(paramiko.AuthenticationException):
        _login(sftp_stack, SFTP_USER, password="anything")
    with pytest.raises(paramiko.AuthenticationException):
        _login(sftp_stack, "root", pkey=key)
    stranger = paramiko.RSAKey.generate(2048)
    with pytest.raises(paramiko.AuthenticationException):
        _login(sftp_stack, SFTP_USER, pkey=stranger)
    ssh = _login(sftp_stack, SFTP_USER, pkey=key)
    try:
        sftp = ssh.open_sftp()
        assert "artifacts" in sftp.listdir("/")  # the chroot: its / is the store
        assert sftp.normalize("..") == "/"
        _, out, _ = ssh.exec_command("id")
        assert b"uid=" not in out.read()  # no shell: internal-sftp only
    finally:
        ssh.close()
