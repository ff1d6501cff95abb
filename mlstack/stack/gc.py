"""Garbage collection: `mlflow gc` for runs, experiments and logged models deleted longer ago
than a limit, their artifacts removed from the bucket through the server's proxy, nothing else
touched.

Beyond `mlflow gc` itself: it never runs during a backup or restore (BackupLock); it refuses
while something it would remove still backs a live registered model version (a deleted run whose
files a version was registered from, as MLflow 2 did, or a logged model of an experiment that
goes), naming those versions and how to proceed; and it removes the files of the logged models
of the experiments that go, which `mlflow gc` (3.17) drops from the database but leaves in the
bucket.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from mlstack.stack.backup import BackupLock, StoreAccess, has_table, list_objects
from mlstack.stack.config import StackError, StackUsageError

# The format `mlflow gc --older-than` accepts: 30d, 12h, 1d2h3m4s, 0.5d.
_AGE = re.compile(r"^(?:(?P<days>[\d.]+)d)?(?:(?P<hours>[\d.]+)h)?(?:(?P<minutes>[\d.]+)m)?"
                  r"(?:(?P<seconds>[\d.]+)s)?$")  # fmt: skip


# `mlflow gc` takes the backend store only as --backend-store-uri; passed in-process from the
# environment so the database password stays out of the process list.
_GC_MAIN = (
    "import os, sys; from mlflow.cli import cli; "
    "sys.argv = ['mlflow', 'gc', '--backend-store-uri', os.environ['MLFLOW_BACKEND_STORE_URI'],"
    " *sys.argv[1:]]; cli()"
)


def parse_age(text: str, flag: str = "--older-than") -> timedelta:
    """`30d`, `12h`, `1d2h3m4s` as a timedelta; StackUsageError (naming `flag`) otherwise."""
    match = _AGE.match(text.strip())
    if not text.strip() or match is None or not any(match.groupdict().values()):
        raise StackUsageError(
            f"{flag} {text!r} is not an age; write it as e.g. 30d, 12h or 1d2h30m"
        )
    try:
        return timedelta(**{k: float(v) for k, v in match.groupdict().items() if v})
    except (ValueError, OverflowError) as exc:
        raise StackUsageError(f"{flag} {text!r}: {exc}; write it as e.g. 30d") from exc


@dataclass
class GcPlan:
    """What gc would delete: run ids, experiment ids (and names), logged model ids."""

    runs: list[str] = field(default_factory=list)
    experiments: dict[str, str] = field(default_factory=dict)
    logged_models: list[str] = field(default_factory=list)
    # Artifact locations of the logged models inside experiments that go: `mlflow gc` drops
    # their rows with the experiment but leaves their files in the bucket (seen with 3.17).
    model_locations: list[str] = field(default_factory=list)
    # Deleted runs that would go but back a live model version: "name/version (run id)".
    blocking: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many of each."""
        return (
            f"{len(self.runs)} deleted runs, {len(self.experiments)} deleted experiments, "
            f"{len(self.logged_models)} deleted logged models"
        )


def plan(access: StoreAccess, older_than: timedelta) -> GcPlan:
    """What `mlflow gc --older-than` would delete now (MLflow's own criteria: runs by their
    deleted_time, experiments by last_update_time, logged models by last_updated_timestamp)."""
    cutoff_ms = int((time.time() - older_than.total_seconds()) * 1000)
    db = "mlflow"
    result = GcPlan()
    experiments = access.query(
        db,
        "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'deleted' "
        "AND (last_update_time IS NULL OR last_update_time < %s)",
        cutoff_ms,
    )
    result.experiments = {str(eid): name for eid, name in experiments}
    # Runs: those deleted long enough ago, plus every deleted run of an experiment that goes.
    runs = access.query(
        db,
        "SELECT run_uuid FROM runs WHERE lifecycle_stage = 'deleted' AND ("
        " (deleted_time IS NULL OR deleted_time < %s) OR experiment_id = ANY(%s))",
        cutoff_ms,
        [int(e) for e in result.experiments],
    )
    result.runs = sorted(r for (r,) in runs)
    if has_table(access, db, "logged_models"):
        models = access.query(
            db,
            "SELECT model_id FROM logged_models WHERE lifecycle_stage = 'deleted' "
            "AND last_updated_timestamp_ms < %s",
            cutoff_ms,
        )
        result.logged_models = sorted(m for (m,) in models)
    if result.runs:
        blocking = access.query(
            db,
            "SELECT name, version, run_id FROM model_versions WHERE run_id = ANY(%s) "
            "AND current_stage <> 'Deleted_Internal' AND source NOT LIKE 'models:/%%' "
            "ORDER BY name, version",
            result.runs,
        )
        result.blocking = [f"{name}/{ver} (run {run})" for name, ver, run in blocking]
    _logged_model_blocking(access, result)
    return result


def _logged_model_blocking(access: StoreAccess, result: GcPlan) -> None:
    """Add to `result` the logged models of the experiments that go (their files) and the live
    versions backed by a logged model that would go (blocking)."""
    db = "mlflow"
    if result.experiments and has_table(access, db, "logged_models"):
        models = access.query(
            db,
            "SELECT model_id, artifact_location FROM logged_models WHERE experiment_id = ANY(%s)",
            [int(e) for e in result.experiments],
        )
        result.model_locations = sorted(loc for _, loc in models if loc)
        # A version of a logged model names it in its source (models:/m-...).
        sources = [f"models:/{model_id}" for model_id, _ in models]
    else:
        sources = []
    # Deleted logged models that go on their own age, too.
    sources += [f"models:/{model_id}" for model_id in result.logged_models]
    if sources:
        backing = access.query(
            db,
            "SELECT name, version, source FROM model_versions WHERE source = ANY(%s) "
            "AND current_stage <> 'Deleted_Internal' ORDER BY name, version",
            sources,
        )
        result.blocking += [
            f"{n}/{v} (logged model {src.removeprefix('models:/')})" for n, v, src in backing
        ]


def bucket_prefix(location: str, destination_prefix: str) -> str | None:
    """The bucket key prefix of a proxied artifact location (`mlflow-artifacts:/2/models/m-1/
    artifacts` -> `artifacts/2/models/m-1/`, the logged model's whole folder); None for a
    location the server does not proxy (left alone)."""
    scheme = "mlflow-artifacts:"
    if not location.startswith(scheme):
        return None
    path = location[len(scheme) :].lstrip("/").removesuffix("/").removesuffix("/artifacts")
    return f"{destination_prefix.strip('/')}/{path}/" if path else None


def _delete_prefixes(access: StoreAccess, prefixes: list[str]) -> int:
    if access.s3_client is None:
        return 0  # SFTP store: left to its own file housekeeping (docs/tracking-stack.md)
    client = access.s3_client()
    removed = 0
    for prefix in prefixes:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=access.bucket, Prefix=prefix):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=access.bucket, Delete={"Objects": keys})
                removed += len(keys)
    return removed


def run_gc(
    access: StoreAccess,
    older_than_text: str,
    gc_env: dict[str, str],
    python: Path,
    destination_prefix: str,
    lock_dir: Path,
    echo: Callable[[str], None],
    dry_run: bool = False,
) -> GcPlan:
    """Plan, check, then run `mlflow gc --older-than` in `python` with the server's environment
    (`gc_env`: backend store, S3 keys, MLFLOW_TRACKING_URI of the server so artifacts are
    deleted through its proxy; `destination_prefix`: the bucket folder of its
    --artifacts-destination, for the files `mlflow gc` leaves). Returns the plan; reports
    the bucket's objects before and after."""
    older_than = parse_age(older_than_text)
    with BackupLock(lock_dir, "gc").held():
        todo = plan(access, older_than)
        echo(f"gc: older than {older_than_text}: {todo.summary()}")
        if todo.blocking:
            shown = ", ".join(todo.blocking[:5]) + (" ..." if len(todo.blocking) > 5 else "")
            raise StackUsageError(
                f"gc would remove files that registered model versions still load ({shown}); "
                "restore what they come from (`mlflow runs restore --run-id ID`, `mlflow "
                "experiments restore --experiment-id ID`) or delete those versions first"
            )
        if dry_run or not (todo.runs or todo.experiments or todo.logged_models):
            return todo
        before = len(list_objects(access))
        started = time.monotonic()
        result = subprocess.run(
            [str(python), "-c", _GC_MAIN, "--older-than", older_than_text],
            env=gc_env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if result.returncode != 0:
            lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()] or ["?"]
            cause = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1])
            raise StackError(f"`mlflow gc` failed: {cause.strip()[:300]}")
        prefixes = [bucket_prefix(loc, destination_prefix) for loc in todo.model_locations]
        removed = _delete_prefixes(access, [p for p in prefixes if p])
        if removed:
            echo(f"gc: removed {removed} files of {len(prefixes)} logged models of the "
                 "experiments that went (`mlflow gc` leaves them)")  # fmt: skip
        after = len(list_objects(access))
        echo(
            f"gc: done in {time.monotonic() - started:.1f}s; the bucket went from {before} "
            f"to {after} objects"
        )
    return todo
