"""The dev image's entry point: sshd (key only) and JupyterLab.

Run as `python -m mlstack.entrypoints.devcontainer`.

At every start, as root inside the container:
1. host keys: made once into /etc/ssh/host-keys (a volume), never baked into the image;
2. authorized keys: from $SSH_AUTHORIZED_KEYS and/or a file mounted at
   /run/secrets/authorized_keys, written to /etc/ssh/authorized_keys/dockeruser (root-owned);
   none at all is an error, since nobody could log in;
3. the session environment: every MLFLOW_* / MLSTACK_* variable of the container is handed to
   SSH sessions (sshd's SetEnv and /etc/profile.d), so `python train.py` over SSH logs to the
   same tracking server as the container;
4. JupyterLab as dockeruser on port 8888 when $JUPYTER_TOKEN is set (Jupyter reads it);
5. sshd in the foreground. SIGTERM stops both; the container exits when either exits.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from mlstack.cli import run_cli
from mlstack.errors import UsageError

USER = "dockeruser"
UID = 1000
HOST_KEY_DIR = Path("/etc/ssh/host-keys")
HOST_KEY_TYPES = ("ed25519", "rsa")
AUTHORIZED_KEYS_DIR = Path("/etc/ssh/authorized_keys")
KEYS_FILE = Path("/run/secrets/authorized_keys")
SSHD_ENV_CONF = Path("/etc/ssh/sshd_config.d/10-session-env.conf")
PROFILE_SNIPPET = Path("/etc/profile.d/mlstack.sh")
FORWARDED_PREFIXES = ("MLFLOW_", "MLSTACK_")
JUPYTER_PORT = 8888
# Public-key line: optional options are not accepted (they could re-enable what we disable).
KEY_LINE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
    r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/=]+( .*)?$"
)


def authorized_keys(env: Mapping[str, str], keys_file: Path = KEYS_FILE) -> list[str]:
    """The public keys allowed to log in, from the environment and the mounted file."""
    text = env.get("SSH_AUTHORIZED_KEYS", "")
    if keys_file.is_file():
        text += "\n" + keys_file.read_text()
    keys = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    for number, key in enumerate(keys, 1):
        if not KEY_LINE.match(key):
            raise UsageError(
                f"authorized key {number} is not an OpenSSH public key line ({key[:30]!r}...): "
                "pass the contents of a .pub file, without options"
            )
    if not keys:
        raise UsageError(
            "no SSH public key: set SSH_AUTHORIZED_KEYS (e.g. in .env) or mount a file at "
            f"{keys_file}; logins are by key only"
        )
    return keys


def ensure_host_keys(key_dir: Path = HOST_KEY_DIR) -> list[Path]:
    """Generate the missing host keys in `key_dir`; existing ones are kept (stable identity)."""
    key_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for kind in HOST_KEY_TYPES:
        key = key_dir / f"ssh_host_{kind}_key"
        if key.exists():
            continue
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "mlstack-dev", "-f", str(key)],
            check=True,
        )
        made.append(key)
    return made


def session_env(env: Mapping[str, str]) -> dict[str, str]:
    """The container variables SSH sessions should see (tracking URI, project settings)."""
    return {k: v for k, v in sorted(env.items()) if k.startswith(FORWARDED_PREFIXES)}


def render_sshd_setenv(variables: Mapping[str, str]) -> str:
    """An sshd_config `SetEnv` line for `variables` (empty when there are none)."""
    for key, value in variables.items():
        if '"' in value or "\n" in value:
            raise UsageError(f"{key} contains a quote or newline; sshd's SetEnv cannot carry it")
    if not variables:
        return ""
    return "SetEnv " + " ".join(f'"{k}={v}"' for k, v in variables.items()) + "\n"


def render_profile(variables: Mapping[str, str]) -> str:
    """/etc/profile.d lines exporting `variables` for login shells."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in variables.items())


def prepare(env: Mapping[str, str]) -> None:
    """Host keys, authorized keys and the session environment (steps 1-3 of the module doc)."""
    keys = authorized_keys(env)
    made = ensure_host_keys()
    AUTHORIZED_KEYS_DIR.mkdir(parents=True, exist_ok=True)
    target = AUTHORIZED_KEYS_DIR / USER
    target.write_text("\n".join(keys) + "\n")
    target.chmod(0o644)  # sshd's StrictModes: root-owned, not writable by others
    variables = session_env(env)
    SSHD_ENV_CONF.write_text(render_sshd_setenv(variables))
    PROFILE_SNIPPET.write_text(render_profile(variables))
    Path("/run/sshd").mkdir(exist_ok=True)
    print(
        f"dev: {len(keys)} authorized key(s) for {USER}; host keys "
        f"{'generated' if made else 'kept'} in {HOST_KEY_DIR}; "
        f"session env: {', '.join(variables) or 'none'}",
        flush=True,
    )


def start_jupyter(env: Mapping[str, str], workdir: Path) -> subprocess.Popen[bytes] | None:
    """JupyterLab as dockeruser, or None (with a line saying so) without $JUPYTER_TOKEN."""
    if not env.get("JUPYTER_TOKEN"):
        print("dev: JupyterLab off (set JUPYTER_TOKEN to start it on port 8888)", flush=True)
        return None
    cmd = [
        "jupyter", "lab", "--no-browser", "--ip=0.0.0.0", f"--port={JUPYTER_PORT}",
        f"--ServerApp.root_dir={workdir}",
    ]  # fmt: skip
    user_env = dict(env) | {"HOME": f"/home/{USER}", "USER": USER, "SHELL": "/bin/bash"}
    return subprocess.Popen(cmd, env=user_env, cwd=workdir, user=UID, group=UID, extra_groups=[])


def serve(env: Mapping[str, str]) -> int:
    """Run sshd and JupyterLab until one exits or the container is stopped."""
    workdir = Path(env.get("MLSTACK_IMAGE_CODE_DIR", "/opt/mlstack"))
    children = [p for p in (start_jupyter(env, workdir),) if p is not None]
    children.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e"]))
    print("dev: sshd listening on port 22", flush=True)

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    stop(signal.SIGTERM, None)
    for child in children:
        child.wait(timeout=30)
    return max(abs(child.returncode or 0) for child in children)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the dev image."""
    parser = argparse.ArgumentParser(
        prog="python -m mlstack.entrypoints.devcontainer", description=__doc__
    )
    parser.parse_args(argv)

    def body() -> int:
        if os.geteuid() != 0:
            raise UsageError("the dev entry point runs as root (sshd needs it): drop `--user`")
        prepare(os.environ)
        return serve(os.environ)

    return run_cli(parser.prog, body)


if __name__ == "__main__":
    sys.exit(main())
