"""What one native stack is: its ports and names (StackConfig) and its generated secrets
(Credentials), both kept in the state directory so later commands find the same stack."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlstack.settings import PROJ_ROOT

HOST = "127.0.0.1"
DEFAULT_STATE_DIR = PROJ_ROOT / ".stack"
GRPC_OFFSET = 10_000  # SeaweedFS puts each gRPC port at its HTTP port + 10000
# Options that describe a run of a command rather than the stack: not saved.
_NOT_SAVED = ("state_dir", "timeout_s")


class StackError(Exception):
    """A problem starting or checking the stack; the message names the cause and the fix."""


class StackUsageError(StackError):
    """A StackError the user fixes with an option of the command (a port already taken)."""


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
    # --pipelines: the Prefect server (database `prefect` in the same PostgreSQL) and the
    # retraining runner, which serves `retrain/<model>` for each of retrain_models.
    pipelines: bool = False
    prefect_port: int = 4200
    # --artifacts sftp: artifacts on an SFTP server (stack/sftp.py) instead of the S3 bucket.
    artifacts: str = "s3"
    sftp_port: int = 2022
    sftp_root: str = ""  # default <state_dir>/sftp
    retrain_models: str = "wine"
    retrain_every_min: float = 5.0
    # --gc-older-than: the runner also deploys stack-gc/<state dir> every gc_every_h hours.
    gc_older_than: str = ""
    gc_every_h: float = 24.0
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
    def prefect_api_url(self) -> str:
        """What the runner and `python -m mlstack.pipelines` export as PREFECT_API_URL."""
        return f"http://{HOST}:{self.prefect_port}/api"

    @property
    def labels_dir(self) -> Path:
        """Where label files for the runner's retraining go (<labels_dir>/<model>/*.csv)."""
        return self.state_dir / "labels"

    @property
    def logs(self) -> Path:
        """Directory of the services' log files."""
        return self.state_dir / "logs"

    def save(self) -> None:
        """Write the config to `<state_dir>/stack.json` (all but the per-command options)."""
        data = {k: v for k, v in asdict(self).items() if k not in _NOT_SAVED}
        write_private(self.state_dir / "stack.json", json.dumps(data, indent=2))

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
    prefect_db_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def load_or_create(cls, state_dir: Path) -> Credentials:
        """Read `<state_dir>/credentials.json`, creating it with fresh secrets the first time
        (and adding, once, a secret a newer version needs: the file keeps every value)."""
        path = state_dir / "credentials.json"
        saved = json.loads(path.read_text()) if path.exists() else {}
        creds = cls(**saved)
        if asdict(creds) != saved:
            write_private(path, json.dumps(asdict(creds), indent=2))
        return creds


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
