"""NativeStack: the services of one state directory, started in order (each waited on until
healthy), stopped in reverse, and their status."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mlstack.polling import poll_until
from mlstack.stack import backup as backups
from mlstack.stack import gc as gcmod
from mlstack.stack.config import HOST, Credentials, StackConfig, StackError, StackUsageError
from mlstack.stack.mlflow_server import MlflowServer
from mlstack.stack.pipelines import PREFECT_DB, PrefectServer, RetrainRunner
from mlstack.stack.postgres import DB_NAME, DB_USER, PG_SUPERUSER, Postgres, find_postgres_bin
from mlstack.stack.processes import ProcessTable, port_free
from mlstack.stack.s3 import SeaweedS3
from mlstack.stack.service import Service
from mlstack.stack.sftp import SftpServer

log = logging.getLogger(__name__)

STOP_GRACE_S = 20.0  # then SIGKILL


class NativeStack:
    """Start, check and stop the services of one state directory."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state: Path = config.state_dir
        self.pids = ProcessTable(self.state)
        self.postgres = Postgres(config, self.pids)
        self.s3 = SeaweedS3(config, self.pids)
        self.sftp = SftpServer(config, self.pids)
        if config.artifacts not in ("s3", "sftp"):
            raise StackUsageError(f"--artifacts {config.artifacts!r}: choose s3 or sftp")
        store: SeaweedS3 | SftpServer = self.sftp if config.artifacts == "sftp" else self.s3
        self.mlflow = MlflowServer(config, self.pids, self.postgres, store)
        started: list[Service] = [self.postgres, store, self.mlflow]
        if config.pipelines:
            started += [
                PrefectServer(config, self.pids, self.postgres),
                RetrainRunner(config, self.pids),
            ]
        # Start order; stopped in reverse.
        self.services: dict[str, Service] = {s.name: s for s in started}

    @property
    def creds(self) -> Credentials:
        """The stack's credentials (generated on first use)."""
        return self.postgres.creds

    def s3_client(self):
        """A boto3 client on the artifact store with the stack's keys (checks and tests)."""
        return self.s3.client()

    def up(self, echo: Callable[[str], None] = log.info) -> None:
        """Start whatever is not running yet, in order, each waited on until healthy."""
        self.config.logs.mkdir(parents=True, exist_ok=True)
        self.config.save()
        # Everything that can be checked is checked before anything starts, so a missing
        # binary or a taken port never leaves half a stack running. Binaries first: a missing
        # one is this machine's problem whatever ports are chosen.
        for service in self.services.values():
            service.preflight()
        self._check_ports()
        for name, service in self.services.items():
            pid = self.pids.alive_pid(name)
            if pid:
                self._adopt(service, pid)
                echo(f"{name:9} already running (pid {pid})")
                continue
            started = time.monotonic()
            echo(f"{name:9} starting ...")
            if service is self.mlflow:
                self._backup_before_upgrade(echo)
            service.start()
            echo(f"{name:9} ready in {time.monotonic() - started:.1f}s")

    def down(self, purge: bool = False, echo: Callable[[str], None] = log.info) -> None:
        """Stop the recorded processes (reverse order); with `purge`, delete all state too."""
        for name in reversed(self.services):
            self.stop_service(name, echo=echo)
        if purge and self.state.exists():
            shutil.rmtree(self.state)
            echo(f"purged {self.state}")

    def start_service(self, name: str) -> None:
        """Start one service (which must be stopped) and wait until it is healthy."""
        self.services[name].start()

    def stop_service(self, name: str, echo: Callable[[str], None] = log.info) -> None:
        """Stop one service by its recorded pid (its stop signal, SIGKILL after 20 s)."""
        pid = self.pids.alive_pid(name)
        if pid is None:
            self.pids.forget(name)
            return
        os.kill(pid, self.services[name].stop_signal)

        def still_running() -> str | None:
            return "still running" if self.pids.alive_pid(name) else None

        if poll_until(still_running, STOP_GRACE_S, interval_s=0.1) is not None:
            os.kill(pid, signal.SIGKILL)
        self.pids.forget(name)
        echo(f"{name:9} stopped (pid {pid})")

    def status(self) -> dict[str, str]:
        """Per service: 'running (pid N), healthy' (or what is wrong), or 'stopped'."""
        out = {}
        for name, service in self.services.items():
            pid = self.pids.alive_pid(name)
            if pid is None:
                out[name] = "stopped"
                continue
            problem = service.problem()
            out[name] = f"running (pid {pid}), " + (
                f"unhealthy: {problem}" if problem else "healthy"
            )
        return out

    # -- data: backup, restore, upgrades -------------------------------------------------

    def store_access(self) -> backups.StoreAccess:
        """Superuser access to this stack's PostgreSQL and its bucket, for backup and restore."""
        return backups.StoreAccess(
            pg_host=HOST,
            pg_port=self.config.pg_port,
            pg_user=PG_SUPERUSER,
            pg_password=self.creds.pg_superuser_password,
            pg_bin=find_postgres_bin(),
            s3_client=(
                None
                if self.config.artifacts == "sftp"
                else lambda: self.s3.client(attempts=3, read_timeout_s=60)
            ),
            bucket=self.config.bucket,
            ensure_database=self._ensure_database,
        )

    def _ensure_database(self, name: str) -> str:
        """Create database `name` with its owner role (the stack's own password for it)."""
        c = self.creds
        owners = {
            DB_NAME: (DB_USER, c.db_password, "db_password"),
            PREFECT_DB: (PREFECT_DB, c.prefect_db_password, "prefect_db_password"),
        }
        if name not in owners:
            raise StackError(
                f"the backup holds database '{name}', which this stack has no role for; "
                "restore it with the mlstack version that made the backup"
            )
        role, password, key = owners[name]
        self.postgres.ensure_role_database(role, password, name, key)
        return role

    def _require_stores(self, command: str) -> None:
        for name in ("postgres", self.config.artifacts):
            if self.pids.alive_pid(name) is None:
                raise StackUsageError(
                    f"{command} needs the stack running ({name} is stopped); start it with `up`"
                )

    def backup(self, dest: Path, echo: Callable[[str], None] = log.info) -> backups.Manifest:
        """Back up the running stack into `dest` (it keeps serving meanwhile)."""
        self._require_stores("backup")
        return backups.backup(self.store_access(), dest, self.state, echo)

    def restore(
        self, src: Path, force: bool = False, echo: Callable[[str], None] = log.info
    ) -> backups.Manifest:
        """Restore backup `src` into this stack: checked first; then the MLflow server (and
        Prefect) is stopped, the data replaced, and what was running started again (the
        server's start runs `mlflow db upgrade`, so an older backup comes back upgraded)."""
        self._require_stores("restore")
        access = self.store_access()
        backups.check_restorable(access, src, force, echo)
        writers = [n for n in ("pipelines", "prefect", "mlflow") if n in self.services]
        # The lock first: a gc or backup in progress refuses the restore before anything stops.
        with backups.BackupLock(self.state, "restore").held():
            running = [n for n in writers if self.pids.alive_pid(n)]
            for name in running:
                self.stop_service(name, echo=echo)
            try:
                return backups.restore(access, src, self.state, echo, force=force, checked=True,
                                       hold_lock=False)  # fmt: skip
            finally:
                # Whatever happened, what ran runs again (after a failed restore too, so the
                # stack is never left without its server).
                for name in reversed(writers):
                    if name in running or name == "mlflow":
                        echo(f"{name:9} starting ...")
                        self.start_service(name)
                        echo(f"{name:9} ready")

    def gc(
        self, older_than: str, dry_run: bool = False, echo: Callable[[str], None] = log.info
    ) -> gcmod.GcPlan:
        """`mlflow gc --older-than` on this stack (its server must run: artifacts are deleted
        through its proxy)."""
        self._require_stores("gc")
        if self.pids.alive_pid("mlflow") is None:
            raise StackUsageError("gc needs the MLflow server running; start it with `up`")
        env = self.mlflow.server_env()
        env["MLFLOW_TRACKING_URI"] = self.config.tracking_uri
        prefix = self.mlflow.artifacts_destination.split("/", 3)[3]  # s3://bucket/<prefix>
        return gcmod.run_gc(self.store_access(), older_than, env, Path(sys.executable), prefix,
                            self.state, echo, dry_run=dry_run)  # fmt: skip

    def _backup_before_upgrade(self, echo: Callable[[str], None]) -> None:
        """Before `mlflow db upgrade` changes an existing store's schema, back it up into
        `<state>/backups/` and say so: an upgrade is one-way."""
        access = self.store_access()
        current = backups.schema_revision(access)
        head = backups.head_revision()
        if current is None or current == head:
            return
        if not backups.known_revision(current):
            raise StackUsageError(
                f"the MLflow database is at schema {current}, which this MLflow "
                f"({backups.version('mlflow-skinny')}) does not know: it was made by a newer "
                "MLflow; run that version, or restore a backup made with this one"
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = self.state / "backups" / f"pre-upgrade-{current}-{stamp}"
        echo(f"mlflow    schema {current} is older than this MLflow's {head}: backing up to "
             f"{dest} before `mlflow db upgrade`")  # fmt: skip
        backups.backup(access, dest, self.state, echo)
        echo(f"mlflow    upgrading the schema {current} -> {head} (log: {self.mlflow.log_file})")

    def _adopt(self, service: Service, pid: int) -> None:
        """A service left running by an earlier `up` must be healthy."""
        if problem := service.problem():
            raise StackError(
                f"{service.name} is running (pid {pid}) but unhealthy ({problem}); see "
                f"{service.log_file}, or restart it with `down` then `up`"
            )
        service.adopt()

    def _check_ports(self) -> None:
        for name, service in self.services.items():
            if self.pids.alive_pid(name):
                continue
            for label, port in service.ports().items():
                if not port_free(port):
                    raise StackUsageError(
                        f"port {port} ({label}) on {HOST} is already in use; free it or "
                        f"choose another with {service.port_flag}"
                    )
