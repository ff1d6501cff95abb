"""The retraining services (`up --pipelines`): a Prefect server keeping its database in the
stack's PostgreSQL (its own role and database, `prefect`), and the runner that serves the
`retrain/<model>` deployments on a schedule and runs them (python -m mlstack.pipelines serve)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from mlstack.settings import PROJ_ROOT
from mlstack.stack.config import HOST, StackConfig, StackError
from mlstack.stack.postgres import Postgres
from mlstack.stack.processes import ProcessTable
from mlstack.stack.service import Service

PREFECT_DB = "prefect"


def find_prefect() -> Path:
    """The `prefect` command installed beside this Python (group `pipelines`), or on PATH."""
    beside = Path(sys.executable).parent / "prefect"
    found = beside if beside.exists() else shutil.which("prefect")
    if not found:
        raise StackError(
            "Prefect is not installed: run `make setup`, or pip install -e '.[pipelines]'"
        )
    return Path(found)


def _prefect_env(config: StackConfig, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",  # else its telemetry task logs lock errors
        PREFECT_API_URL=config.prefect_api_url,
    )
    return env


def _health(url: str) -> str | None:
    import requests

    try:
        resp = requests.get(url, timeout=3)
    except requests.RequestException as exc:
        return type(exc).__name__
    return None if resp.status_code == 200 else f"{url} answered {resp.status_code}"


class PrefectServer(Service):
    """The scheduler and UI of the retraining flows (http://127.0.0.1:4200)."""

    name = "prefect"
    title = "Prefect server"
    port_flag = "--prefect-port"

    def __init__(self, config: StackConfig, pids: ProcessTable, postgres: Postgres) -> None:
        super().__init__(config, pids)
        self.postgres = postgres

    def ports(self) -> dict[str, int]:
        """The API and UI port."""
        return {self.name: self.config.prefect_port}

    def preflight(self) -> None:
        """Prefect must be installed."""
        find_prefect()

    def start(self) -> None:
        """Create its role and database if missing, start it, wait for /api/health."""
        c = self.creds
        self.postgres.ensure_role_database(
            PREFECT_DB, c.prefect_db_password, PREFECT_DB, "prefect_db_password"
        )
        env = _prefect_env(self.config, self.config.state_dir / "prefect")
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = (
            f"postgresql+asyncpg://{PREFECT_DB}:{c.prefect_db_password}@{HOST}:"
            f"{self.config.pg_port}/{PREFECT_DB}"
        )
        port = str(self.config.prefect_port)
        self.spawn([str(find_prefect()), "server", "start", "--host", HOST, "--port", port], env)
        self.wait_healthy()

    def problem(self) -> str | None:
        """None once /api/health answers."""
        return self.exited() or _health(f"{self.config.prefect_api_url}/health")


class RetrainRunner(Service):
    """`python -m mlstack.pipelines serve` for the configured models, every N minutes."""

    name = "pipelines"
    title = "retraining runner"

    def ports(self) -> dict[str, int]:
        """It listens on no port."""
        return {}

    def models(self) -> list[str]:
        """The models it serves a deployment for."""
        return [m.strip() for m in self.config.retrain_models.split(",") if m.strip()]

    def make_labels_dirs(self) -> list[Path]:
        """Create `<labels_dir>/<model>/` for each model (the stack tells people to drop label
        files there, and simulate's --labels-out writes into one); the folders."""
        folders = [self.config.labels_dir / model for model in self.models()]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        return folders

    def start(self) -> None:
        """Start the runner (tracking server and labels dir of this stack); wait until every
        deployment is registered."""
        c = self.config
        env = _prefect_env(c, c.state_dir / "prefect-runner")
        env = {k: v for k, v in env.items() if not k.startswith(("MLFLOW_", "MLSTACK_"))}
        env.update(
            MLFLOW_TRACKING_URI=c.tracking_uri,
            MLFLOW_DISABLE_TELEMETRY="true",
            MLSTACK_LABELS_DIR=str(c.labels_dir),
        )
        self.make_labels_dirs()
        every = f"{c.retrain_every_min:g}"
        argv = [sys.executable, "-m", "mlstack.pipelines", "serve", "--models",
                ",".join(self.models()), "--every", every]  # fmt: skip
        if c.gc_older_than:  # off unless asked: gc deletes for good
            argv += ["--gc-older-than", c.gc_older_than, "--gc-every", f"{c.gc_every_h:g}",
                     "--gc-state-dir", str(c.state_dir)]  # fmt: skip
        self.spawn(argv, env, cwd=PROJ_ROOT)  # Prefect loads the flow from its entrypoint
        self.wait_healthy()

    def problem(self) -> str | None:
        """None once the Prefect server knows every deployment."""
        if exited := self.exited():
            return exited
        for model in self.models():
            problem = _health(f"{self.config.prefect_api_url}/deployments/name/retrain/{model}")
            if problem:
                return f"deployment retrain/{model} not registered yet ({problem})"
        return None
