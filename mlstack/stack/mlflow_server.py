"""The MLflow tracking server: PostgreSQL as backend store, the S3 bucket as artifact store,
artifacts proxied (`--serve-artifacts`), so clients need only MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlstack.stack.config import HOST, StackConfig, StackError
from mlstack.stack.postgres import Postgres
from mlstack.stack.processes import ProcessTable
from mlstack.stack.s3 import SeaweedS3
from mlstack.stack.service import Service
from mlstack.stack.sftp import SftpServer

# `mlflow db upgrade URI`, the URI (with the database password) passed in-process from the
# environment so it stays out of the process list.
_DB_UPGRADE = (
    "import os, sys; from mlflow.cli import cli; "
    "sys.argv = ['mlflow', 'db', 'upgrade', os.environ['MLFLOW_BACKEND_STORE_URI']]; cli()"
)


class MlflowServer(Service):
    """The tracking server, the only process that holds the database password and S3 keys."""

    name = "mlflow"
    title = "MLflow server"
    port_flag = "--mlflow-port"

    def __init__(
        self,
        config: StackConfig,
        pids: ProcessTable,
        postgres: Postgres,
        store: SeaweedS3 | SftpServer,
    ) -> None:
        super().__init__(config, pids)
        self.postgres = postgres
        self.store = store  # the artifact store: the S3 bucket, or the SFTP server

    @property
    def artifacts_destination(self) -> str:
        """Where the server puts artifacts."""
        if isinstance(self.store, SftpServer):
            return self.store.artifacts_destination
        return f"s3://{self.config.bucket}/artifacts"

    def ports(self) -> dict[str, int]:
        """The one port it listens on."""
        return {self.name: self.config.mlflow_port}

    def server_env(self) -> dict[str, str]:
        """The server's environment: this process's, minus any AWS_/MLFLOW_ settings, plus the
        store URIs and S3 keys (in the environment, not argv, so they stay out of `ps`)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
        env.update(
            MLFLOW_BACKEND_STORE_URI=self.postgres.backend_store_uri,
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        if isinstance(self.store, SftpServer):
            # Its .ssh/ holds the server's key, ssh config and pinned known_hosts.
            env["HOME"] = str(self.store.client_home)
            return env
        env.update(
            MLFLOW_S3_ENDPOINT_URL=self.config.s3_endpoint,
            AWS_ACCESS_KEY_ID=self.creds.s3_access_key,
            AWS_SECRET_ACCESS_KEY=self.creds.s3_secret_key,
            AWS_DEFAULT_REGION="us-east-1",
            # Fail an upload within seconds when S3 is down, instead of retrying for minutes.
            AWS_RETRY_MODE="standard",
            AWS_MAX_ATTEMPTS="2",
        )
        return env

    def start(self) -> None:
        """Migrate the database schema, check the bucket, start the server, wait for /health."""
        mlflow_bin = str(Path(sys.executable).parent / "mlflow")
        env = self.server_env()
        upgrade = subprocess.run(
            [sys.executable, "-c", _DB_UPGRADE],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # Logged, so the log shows when the schema was upgraded (`up` also says from which
        # revision to which, before it backs the store up).
        with open(self.log_file, "a") as log:
            log.write(f"mlflow db upgrade (exit {upgrade.returncode}):\n{upgrade.stderr}")
        if upgrade.returncode != 0:
            lines = upgrade.stderr.strip().splitlines() or ["no output"]
            cause = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1])
            raise StackError(f"`mlflow db upgrade` failed: {cause.strip()[:300]}")
        if problem := self.store.problem():
            raise StackError(
                f"artifact store {self.artifacts_destination} not usable ({problem}); "
                "`up` creates it when it starts the store: run `down` then `up`"
            )
        port = self.config.mlflow_port
        hosts = f"{HOST}:{port},localhost:{port},{HOST},localhost"
        self.spawn(
            [
                mlflow_bin, "server",
                "--artifacts-destination", self.artifacts_destination,
                "--serve-artifacts",
                "--host", HOST,
                "--port", str(port),
                "--workers", str(self.config.workers),
                "--allowed-hosts", hosts,
            ],
            env=env,
        )  # fmt: skip
        self.wait_healthy()

    def problem(self) -> str | None:
        """None once GET /health answers 200."""
        import requests

        if exited := self.exited():
            return exited
        try:
            resp = requests.get(f"{self.config.tracking_uri}/health", timeout=2)
        except requests.RequestException as exc:
            return type(exc).__name__
        return None if resp.status_code == 200 else f"/health answered {resp.status_code}"
