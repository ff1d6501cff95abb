"""PostgreSQL, the backend store: a private cluster in the state directory, the `mlflow` role
and database, and, when run as root, the drop to the `postgres` user that initdb requires."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from mlstack.settings import StackSettings
from mlstack.stack.config import HOST, StackError, write_private
from mlstack.stack.service import Service

DB_NAME = "mlflow"
DB_USER = "mlflow"
PG_SUPERUSER = "postgres"


def find_postgres_bin(settings: StackSettings | None = None) -> Path:
    """Directory holding initdb and postgres: $MLSTACK_PG_BIN (settings.pg_bin), else on PATH,
    else Debian's /usr/lib/postgresql/N/bin (newest)."""
    override = (settings or StackSettings()).pg_bin
    if override:
        if not (override / "initdb").exists():
            raise StackError(
                f"MLSTACK_PG_BIN={override} holds no initdb; point it at PostgreSQL's bin/ "
                "directory or unset it"
            )
        return override
    on_path = shutil.which("initdb")
    if on_path:
        # Resolved: a symlink on PATH (/usr/local/bin/initdb) points into the directory that
        # also holds pg_dump and pg_restore of the same version.
        return Path(on_path).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise StackError(
            "PostgreSQL server binaries (initdb, postgres) not found; install them with "
            "`apt-get install postgresql` (Debian) or put their bin/ directory on PATH"
        )
    return candidates[-1].parent


def _as_postgres_user() -> dict[str, object]:
    """Popen arguments that drop root to the `postgres` user (initdb/postgres refuse root)."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam(PG_SUPERUSER)
    except KeyError as exc:
        raise StackError(
            "running as root, but there is no 'postgres' user to run PostgreSQL as; "
            "install the postgresql package (it creates one) or run as a normal user"
        ) from exc
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _check_reachable(path: Path) -> None:
    """As root, PostgreSQL runs as `postgres`, which must be able to traverse every parent."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise StackError(
                f"the postgres user cannot reach {path} ({parent} is not traversable by other "
                "users); use a --state-dir outside it, e.g. under /var/tmp"
            )


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, PG_SUPERUSER, PG_SUPERUSER)


class Postgres(Service):
    """The backend store: holds runs, metrics and the registry."""

    name = "postgres"
    title = "PostgreSQL"
    port_flag = "--pg-port"
    stop_signal = signal.SIGINT  # PostgreSQL's "fast shutdown"

    @property
    def root(self) -> Path:
        """The cluster's directory (data, socket) in the state directory."""
        return self.config.state_dir / "postgres"

    @property
    def backend_store_uri(self) -> str:
        """SQLAlchemy URI of the backend store (psycopg2 driver, as MLflow's server needs)."""
        return (
            f"postgresql+psycopg2://{DB_USER}:{self.creds.db_password}@{HOST}:"
            f"{self.config.pg_port}/{DB_NAME}"
        )

    def ports(self) -> dict[str, int]:
        """The one port it listens on."""
        return {self.name: self.config.pg_port}

    def preflight(self) -> None:
        """The server binaries must exist."""
        find_postgres_bin()

    def start(self) -> None:
        """initdb on first start, then postgres; wait; create the mlflow role and database."""
        bin_dir = find_postgres_bin()
        as_pg = _as_postgres_user()
        _check_reachable(self.config.state_dir)
        data = self.root / "data"
        if not (data / "PG_VERSION").exists():
            self._initdb(bin_dir, data, as_pg)
        socket_dir = self.root / "run"
        socket_dir.mkdir(exist_ok=True)
        _chown_to_postgres(socket_dir)
        self.spawn(
            [
                str(bin_dir / "postgres"),
                "-D", str(data),
                "-p", str(self.config.pg_port),
                "-c", f"listen_addresses={HOST}",
                "-k", str(socket_dir),
            ],
            cwd=self.root,
            **as_pg,
        )  # fmt: skip
        self.wait_healthy()
        self.ensure_database()

    def adopt(self) -> None:
        """An earlier `up` may have stopped before the database existed."""
        self.ensure_database()

    def _initdb(self, bin_dir: Path, data: Path, as_pg: dict[str, object]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        _chown_to_postgres(self.root)
        pwfile = self.root / "pwfile"
        write_private(pwfile, self.creds.pg_superuser_password + "\n")
        _chown_to_postgres(pwfile)
        try:
            result = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D", str(data),
                    "-U", PG_SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "-E", "UTF8",
                ],
                capture_output=True,
                text=True,
                cwd=self.root,
                **as_pg,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip().splitlines()[-1]}")

    def connect(self, user: str, password: str, dbname: str):
        """A psycopg2 connection to this cluster."""
        import psycopg2

        return psycopg2.connect(
            host=HOST,
            port=self.config.pg_port,
            user=user,
            password=password,
            dbname=dbname,
            connect_timeout=3,
        )

    def problem(self) -> str | None:
        """None once the superuser can log in."""
        import psycopg2

        if exited := self.exited():
            return exited
        try:
            self.connect(PG_SUPERUSER, self.creds.pg_superuser_password, "postgres").close()
        except psycopg2.OperationalError as exc:
            return str(exc).strip().splitlines()[0]
        return None

    def ensure_database(self) -> None:
        """Create the mlflow role and database if missing, then log in as that role."""
        self.ensure_role_database(DB_USER, self.creds.db_password, DB_NAME, "db_password")

    def ensure_role_database(self, role: str, password: str, database: str, key: str) -> None:
        """Create `role` (LOGIN, `password`) and its `database` if missing, then log in as it;
        `key` names the password in credentials.json for the error that says it is wrong."""
        import psycopg2

        conn = self.connect(PG_SUPERUSER, self.creds.pg_superuser_password, "postgres")
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction (nor `with conn`)
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE {database} OWNER {role}")
        conn.close()
        try:
            self.connect(role, password, database).close()
        except psycopg2.OperationalError as exc:
            raise StackError(
                f"PostgreSQL refused user '{role}' ({str(exc).strip().splitlines()[0]}); "
                f"{key} in {self.config.state_dir / 'credentials.json'} does not match "
                "the database: restore it, or start afresh with `down --purge`"
            ) from exc
