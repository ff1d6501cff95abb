"""Integration tier: a real PostgreSQL, SeaweedFS S3 and MLflow server, started by the native
launcher (mlstack.stack) on free ports for this test session. No mocks.

Outside CI a machine without the PostgreSQL binaries skips this tier with one line saying why;
with CI=true a stack that cannot start fails the run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlstack.stack import NativeStack, StackConfig, StackError, find_free_ports
from tests.helpers import SHARED_WINE_CSV


def start_stack(state_dir: Path, **config: object) -> NativeStack:
    """Start a stack in `state_dir` (StackConfig `config` on top of free ports), or skip/fail
    (CI) with the reason."""
    settings = {**find_free_ports(), "timeout_s": 120, **config}
    stack = NativeStack(StackConfig(state_dir=state_dir, **settings))
    try:
        stack.up()
    except StackError as exc:
        stack.down()
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the tracking stack did not start: {exc}")
        pytest.skip(f"tracking stack unavailable here: {exc}")
    return stack


def stack_state_dir() -> Path:
    """A fresh state directory the `postgres` user can reach (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="mlstack-test-stack-"))
    path.chmod(0o755)
    return path


@contextmanager
def running_stack(**config: object) -> Iterator[NativeStack]:
    """A started stack in a fresh state directory; stopped and purged afterwards."""
    stack = start_stack(stack_state_dir(), **config)
    try:
        yield stack
    finally:
        stack.down(purge=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[NativeStack]:
    """One running stack for the session's integration tests."""
    with running_stack() as running:
        yield running


def client_env(tracking_uri: str, tmp_path: Path, wine_csv: Path) -> dict[str, str]:
    """What a client process gets: MLFLOW_TRACKING_URI and nothing about S3 or the database."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "MLSTACK_", "AWS_", "POSTGRES", "S3_"))
    }
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_DISABLE_TELEMETRY="true",
        MLSTACK_WINE_DATA=str(SHARED_WINE_CSV if SHARED_WINE_CSV.exists() else wine_csv),
        MLSTACK_CACHE_DIR=str(tmp_path / "cache"),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    return env


@pytest.fixture
def server_env(stack: NativeStack, tmp_path: Path, wine_csv: Path) -> dict[str, str]:
    """Client environment for the session stack."""
    return client_env(stack.config.tracking_uri, tmp_path, wine_csv)


def pg_rows(stack: NativeStack, sql: str, *args: object) -> list[tuple]:
    """Run a query on the backend store directly (psycopg2, as the mlflow role)."""
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1",
        port=stack.config.pg_port,
        user="mlflow",
        password=stack.creds.db_password,
        dbname="mlflow",
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def s3_keys(stack: NativeStack, prefix: str = "") -> list[str]:
    """Every object key in the artifact bucket under `prefix`."""
    paginator = stack.s3_client().get_paginator("list_objects_v2")
    return [
        obj["Key"]
        for page in paginator.paginate(Bucket=stack.config.bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]
