"""The SFTP artifact store (`up --artifacts sftp`): Debian's OpenSSH sshd serving only
`internal-sftp`, key-only, chrooted, on loopback; the MLflow server is its one client and still
proxies artifacts, so clients hold no SSH key.

Layout under the SFTP root (`--sftp-root`, default `<state>/sftp`; sshd's chroot needs it and
every parent owned by root and writable by no one else, so not under /tmp):

    etc/sshd_config, etc/ssh_host_ed25519_key    the server (host key generated once)
    etc/authorized_keys                          the MLflow server's public key, nothing else
    chroot/artifacts/                            the files, owned by the `mlstack-sftp` user

The MLflow server runs with HOME=`<state>/sftp-client`, whose `.ssh/` holds its key, an
`ssh_config` naming it, and `known_hosts` pinning the host key: an SFTP server answering with
any other key is refused (pysftp's default, never StrictHostKeyChecking=no). pysftp reads only
RSA (and DSS) private keys from a file, so the client key is RSA.

MLflow's SFTP repository keeps its connections for the server's lifetime: restart the MLflow
service after the SFTP server restarts (`down` then `up` does both in order).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

from mlstack.stack.config import HOST, StackError, StackUsageError, write_private
from mlstack.stack.service import Service

SFTP_USER = "mlstack-sftp"
SSHD = Path("/usr/sbin/sshd")


def _keygen(path: Path, kind: str, comment: str) -> None:
    """Generate a key pair at `path` unless it exists (never replaced: it is pinned)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = ["-b", "3072", "-m", "PEM"] if kind == "rsa" else []
    result = subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"ssh-keygen failed: {result.stderr.strip()[:200]}")


def _check_chroot_path(path: Path) -> None:
    """sshd refuses a chroot unless it and every parent are root-owned and not group/other
    writable: say which parent is wrong before sshd does, less clearly, per login."""
    for part in [path, *path.parents]:
        if not part.exists():
            continue
        st = part.stat()
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise StackUsageError(
                f"the SFTP root {path} cannot be chrooted: {part} is "
                f"{'not owned by root' if st.st_uid else 'writable by group or others'}; "
                "choose one under a root-owned directory with --sftp-root (e.g. /srv/mlstack-sftp)"
            )


class SftpServer(Service):
    """sshd with internal-sftp only: the artifact store of `--artifacts sftp`."""

    name = "sftp"
    title = "SFTP server"
    port_flag = "--sftp-port"

    @property
    def root(self) -> Path:
        """The SFTP root: etc/ (sshd's files) and chroot/ (what the client sees as /)."""
        configured = self.config.sftp_root
        return Path(configured) if configured else self.config.state_dir / "sftp"

    @property
    def client_home(self) -> Path:
        """HOME of the MLflow server: its .ssh/ (key, config, known_hosts)."""
        return self.config.state_dir / "sftp-client"

    @property
    def artifacts_destination(self) -> str:
        """The MLflow server's --artifacts-destination (a path inside the chroot)."""
        return f"sftp://{SFTP_USER}@{HOST}:{self.config.sftp_port}/artifacts"

    def ports(self) -> dict[str, int]:
        """The one port it listens on."""
        return {self.name: self.config.sftp_port}

    def preflight(self) -> None:
        """sshd and ssh-keygen must exist, this must run as root (chroot), the root be safe."""
        if not SSHD.exists() or not shutil.which("ssh-keygen"):
            raise StackError(
                "the SFTP store needs Debian's OpenSSH server: `apt-get install openssh-server`"
            )
        if os.geteuid() != 0:
            raise StackUsageError(
                "the SFTP store chroots its user, which needs root: run `up --artifacts sftp` as "
                "root"
            )
        _check_chroot_path(self.root)

    def start(self) -> None:
        """Create the user, keys and config (first start), start sshd, wait for its banner."""
        self._ensure_user()
        etc, chroot = self.root / "etc", self.root / "chroot"
        for folder in (self.root, etc, chroot):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)
        artifacts = chroot / "artifacts"
        artifacts.mkdir(exist_ok=True)
        user = pwd.getpwnam(SFTP_USER)
        os.chown(artifacts, user.pw_uid, user.pw_gid)
        artifacts.chmod(0o750)
        host_key = etc / "ssh_host_ed25519_key"
        _keygen(host_key, "ed25519", "mlstack sftp host")
        ssh_dir = self.client_home / ".ssh"
        client_key = ssh_dir / "id_rsa"
        _keygen(client_key, "rsa", "mlstack mlflow server")
        (etc / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
        (etc / "authorized_keys").chmod(0o644)
        self._write_client_files(ssh_dir, client_key, Path(f"{host_key}.pub"))
        config = etc / "sshd_config"
        config.write_text(self._sshd_config(host_key, etc / "authorized_keys", chroot))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.spawn([str(SSHD), "-D", "-e", "-f", str(config)])
        self.wait_healthy()

    def _ensure_user(self) -> None:
        """The login of the MLflow server: a system user, no home, no shell, no password. Its
        password field is `*` (no password can match) rather than useradd's `!`, which sshd
        reads as a locked account and refuses even with a key."""
        try:
            pwd.getpwnam(SFTP_USER)
            steps = []
        except KeyError:
            steps = [["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                      "--shell", "/usr/sbin/nologin", SFTP_USER]]  # fmt: skip
        steps.append(["usermod", "--password", "*", SFTP_USER])
        for argv in steps:
            result = subprocess.run(argv, capture_output=True, text=True)
            if result.returncode != 0:
                cause = result.stderr.strip()[:200]
                raise StackError(f"cannot set up the user {SFTP_USER}: {cause}")

    def _sshd_config(self, host_key: Path, authorized: Path, chroot: Path) -> str:
        # Key-only, one user, no shell, no forwarding: an SFTP drop box and nothing more.
        return "\n".join([
            f"Port {self.config.sftp_port}",
            f"ListenAddress {HOST}",
            f"HostKey {host_key}",
            f"PidFile {self.root / 'etc' / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "UsePAM no",
            f"AllowUsers {SFTP_USER}",
            "DisableForwarding yes",
            "PermitTTY no",
            "Subsystem sftp internal-sftp",
            f"ChrootDirectory {chroot}",
            "ForceCommand internal-sftp",
            "",
        ])  # fmt: skip

    def _write_client_files(self, ssh_dir: Path, key: Path, host_pub: Path) -> None:
        """The MLflow server's ssh config and known_hosts (the host key, pinned)."""
        pub = " ".join(host_pub.read_text().split()[:2])
        port = self.config.sftp_port
        # pysftp looks hosts up by name alone; OpenSSH tools by [host]:port. Both pinned.
        write_private(ssh_dir / "known_hosts", f"{HOST} {pub}\n[{HOST}]:{port} {pub}\n")
        write_private(
            ssh_dir / "config",
            f"Host {HOST}\n  User {SFTP_USER}\n  Port {port}\n  IdentityFile {key}\n"
            "  StrictHostKeyChecking yes\n",
        )

    def problem(self) -> str | None:
        """None once the port answers with an SSH banner."""
        if exited := self.exited():
            return exited
        try:
            with socket.create_connection((HOST, self.config.sftp_port), timeout=2) as sock:
                banner = sock.recv(64)
        except OSError as exc:
            return type(exc).__name__
        return None if banner.startswith(b"SSH-2.0-") else f"no SSH banner ({banner[:20]!r})"
