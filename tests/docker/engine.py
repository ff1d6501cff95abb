"""A private Docker engine for tests, and local stand-ins for the base images we cannot pull.

    python -m tests.docker.engine up      # install (apt) + start dockerd + build stand-ins
    python -m tests.docker.engine down    # stop the dockerd this started (its data is kept)

The build machines reach no image registry, so `python:3.11-slim` is replaced by a stand-in
built from Debian packages (debootstrap: Python 3.11 + a venv at /usr/local, so `python`, `pip`
and installed scripts sit in /usr/local/bin as in the real image) that carries the host's
CA bundle, because pip's TLS goes through an intercepting proxy here. Stand-ins are test-only:
real users pull the real images. Everything lives under one root (default
/var/tmp/mlstack-docker): data root, exec root, socket, pid file, logs.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from mlstack.polling import poll_until

ROOT = Path(os.environ.get("MLSTACK_DOCKER_ROOT", "/var/tmp/mlstack-docker"))
SOCKET = ROOT / "docker.sock"
DOCKER_HOST = f"unix://{SOCKET}"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
STAND_IN = "python:3.11-slim"
# `mlflow models build-docker --env-manager local` starts FROM python:<the model's exact Python
# version>-slim, the version of the interpreter that logged the model: this one.
STAND_IN_ALIASES = (f"python:{platform.python_version()}-slim",)
STAND_IN_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"


class EngineError(Exception):
    """The engine could not be installed, started or prepared; the message says why."""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the docker client against the private engine."""
    env = os.environ | {"DOCKER_HOST": DOCKER_HOST}
    return _run(["docker", *args], env=env, timeout=timeout)


def install() -> None:
    """apt-get install docker.io and debootstrap when missing (needs root)."""
    if shutil.which("dockerd") and shutil.which("debootstrap") and shutil.which("docker"):
        return
    if os.geteuid() != 0:
        raise EngineError(
            "dockerd/debootstrap missing and not root: install docker.io, debootstrap"
        )
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io", "debootstrap"],
    ):
        proc = _run(cmd, env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
        if proc.returncode != 0:
            raise EngineError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-300:]}")


def running() -> bool:
    """True when the private engine answers."""
    if not SOCKET.exists() or not shutil.which("docker"):
        return False
    return docker("version", "--format", "{{.Server.Version}}", timeout=10).returncode == 0


def start(timeout_s: float = 60) -> bool:
    """Start dockerd (overlay2, private socket and roots) unless it already answers.

    Returns True when this call started it (and so may stop it again)."""
    if running():
        return False
    if os.geteuid() != 0:
        raise EngineError("starting dockerd needs root")
    (ROOT / "data").mkdir(parents=True, exist_ok=True)
    (ROOT / "exec").mkdir(exist_ok=True)
    with open(ROOT / "dockerd.log", "ab") as log:
        subprocess.Popen(
            [
                "dockerd",
                "--data-root", str(ROOT / "data"),
                "--exec-root", str(ROOT / "exec"),
                "--pidfile", str(ROOT / "dockerd.pid"),
                "--host", DOCKER_HOST,
                "--storage-driver", "overlay2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    if poll_until(lambda: None if running() else "no answer", timeout_s, interval_s=0.5) is None:
        return True
    tail = (ROOT / "dockerd.log").read_text(errors="replace").strip().splitlines()[-1:]
    raise EngineError(f"dockerd did not answer within {timeout_s:.0f}s: {tail}")


def stop() -> None:
    """Stop the dockerd this harness started (by its pid file)."""
    pidfile = ROOT / "dockerd.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    poll_until(lambda: "running" if Path(f"/proc/{pid}").exists() else None, 30, interval_s=0.2)


def build_stand_in() -> None:
    """Build the `python:3.11-slim` stand-in unless the engine already has it."""
    if docker("image", "inspect", STAND_IN, timeout=30).returncode == 0:
        _tag_aliases()
        return
    rootfs = ROOT / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    proc = _run(
        ["debootstrap", "--variant=minbase", f"--include={STAND_IN_PACKAGES}", "bookworm",
         str(rootfs), DEBIAN_MIRROR],
        timeout=900,
    )  # fmt: skip
    if proc.returncode != 0:
        raise EngineError(f"debootstrap failed: {proc.stderr.strip()[-300:]}")
    shutil.copy(HOST_CA_BUNDLE, rootfs / "usr/local/share/host-ca-bundle.crt")
    proc = _run(["chroot", str(rootfs), "python3", "-m", "venv", "/usr/local"], timeout=300)
    if proc.returncode != 0:
        raise EngineError(f"venv in the stand-in failed: {proc.stderr.strip()[-300:]}")
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / leftover, ignore_errors=True)
    changes = [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV PIP_CERT=/usr/local/share/host-ca-bundle.crt",
        "ENV SSL_CERT_FILE=/usr/local/share/host-ca-bundle.crt",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
    ]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    env = os.environ | {"DOCKER_HOST": DOCKER_HOST}
    args = [a for c in changes for a in ("--change", c)]
    imported = subprocess.run(
        ["docker", "import", *args, "-", STAND_IN], stdin=tar.stdout, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    if imported.returncode != 0:
        raise EngineError(f"docker import failed: {imported.stderr.strip()[-300:]}")
    _tag_aliases()


def _tag_aliases() -> None:
    for alias in STAND_IN_ALIASES:
        tagged = docker("tag", STAND_IN, alias, timeout=30)
        if tagged.returncode != 0:
            raise EngineError(f"docker tag {alias} failed: {tagged.stderr.strip()[-300:]}")


def up() -> bool:
    """Install, start and prepare the engine: what the docker test tier needs. True when
    dockerd was started by this call."""
    install()
    started = start()
    build_stand_in()
    return started


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m tests.docker.engine`."""
    p = argparse.ArgumentParser(prog="python -m tests.docker.engine", description=__doc__)
    p.add_argument("command", choices=["up", "down"])
    args = p.parse_args(argv)
    try:
        up() if args.command == "up" else stop()
    except EngineError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "up":
        print(f"engine ready; export DOCKER_HOST={DOCKER_HOST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
