"""The dev image's entry point: which keys may log in, host keys made once and kept, and the
environment SSH sessions get. The full image (sshd, JupyterLab) is tested in tests/docker."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from mlstack.entrypoints.devcontainer import (
    authorized_keys,
    ensure_host_keys,
    render_profile,
    render_sshd_setenv,
    session_env,
)
from mlstack.errors import UsageError


@pytest.fixture(scope="module")
def public_key(tmp_path_factory) -> str:
    key = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub").read_text().strip()


def test_keys_come_from_the_environment_and_the_mounted_file(public_key, tmp_path) -> None:
    mounted = tmp_path / "authorized_keys"
    mounted.write_text(f"# team keys\n{public_key}\n\n")
    keys = authorized_keys({"SSH_AUTHORIZED_KEYS": public_key}, mounted)
    assert keys == [public_key, public_key]
    assert authorized_keys({}, mounted) == [public_key]


def test_no_key_at_all_is_an_error_naming_the_fix(tmp_path) -> None:
    with pytest.raises(UsageError, match="SSH_AUTHORIZED_KEYS"):
        authorized_keys({}, tmp_path / "absent")


@pytest.mark.parametrize(
    "line",
    ["hunter2", "-----BEGIN OPENSSH PRIVATE KEY-----", 'command="sh" ssh-ed25519 AAAAC3Nza'],
    ids=["password", "private-key", "key-with-options"],
)
def test_anything_but_a_plain_public_key_is_refused(line, tmp_path) -> None:
    with pytest.raises(UsageError, match="not an OpenSSH public key line"):
        authorized_keys({"SSH_AUTHORIZED_KEYS": line}, tmp_path / "absent")


def test_host_keys_are_made_once_and_kept(tmp_path) -> None:
    made = ensure_host_keys(tmp_path)
    assert sorted(p.name for p in made) == ["ssh_host_ed25519_key", "ssh_host_rsa_key"]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert ensure_host_keys(tmp_path) == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert (tmp_path / "ssh_host_ed25519_key").stat().st_mode & 0o077 == 0


def test_sessions_get_the_tracking_settings_only() -> None:
    env = {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLSTACK_WINE_DATA": "/data/wine.csv",
        "SSH_AUTHORIZED_KEYS": "ssh-ed25519 AAAA",
        "JUPYTER_TOKEN": "secret",
        "HOME": "/root",
    }
    assert session_env(env) == {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLSTACK_WINE_DATA": "/data/wine.csv",
    }


def test_session_environment_renders_for_sshd_and_login_shells(tmp_path: Path) -> None:
    variables = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLSTACK_NOTE": "it's here"}
    assert render_sshd_setenv(variables) == (
        'SetEnv "MLFLOW_TRACKING_URI=http://mlflow:5000" "MLSTACK_NOTE=it\'s here"\n'
    )
    assert render_sshd_setenv({}) == ""
    profile = tmp_path / "profile.sh"
    profile.write_text(render_profile(variables))
    shown = subprocess.run(
        ["sh", "-c", f'. {shlex.quote(str(profile))}; printf %s "$MLSTACK_NOTE"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == "it's here"
    with pytest.raises(UsageError, match="quote or newline"):
        render_sshd_setenv({"MLSTACK_X": 'a"b'})
