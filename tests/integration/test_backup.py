"""Backup and restore on real services, the reliability core (`python -m mlstack.stack backup`
and `restore`): a stack populated as a team's is (experiments, runs with params, metric
histories, tags and artifacts, registered versions with aliases, a prediction log, a monitoring
run, a Prefect flow run) is backed up while 4 writers keep logging, then wiped; a fresh stack
restored from the backup holds exactly what the backup holds, every write acknowledged before
the backup began, and serves models:/NAME@champion. A damaged backup is refused, changing nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mlstack.stack import NativeStack, free_port
from tests.helpers import (
    SHARED_WINE_CSV,
    http_server,
    make_wine_frame,
    run_entry,
    scoring_requests,
    write_uci_csv,
)
from tests.integration.conftest import client_env, pg_rows, s3_keys, stack_state_dir, start_stack
from tests.integration.populate import Writers, log_runs

MODEL = "bk-wine"
# Insert-only tables: a row, once written, never changes.
APPEND_ONLY = ("metrics", "params", "tags", "experiment_tags")
# Tables the writers never touch while the backup runs: restored exactly.
STILL = ("registered_models", "model_versions", "registered_model_aliases")


def stack_cli(stack: NativeStack, *args: str, timeout: float = 600):
    """`python -m mlstack.stack ARGS --state-dir <stack's>`, as an operator runs it."""
    argv = ["-m", "mlstack.stack", *args, "--state-dir", str(stack.config.state_dir)]
    return run_entry(argv, dict(os.environ), timeout=timeout)


def table_rows(stack: NativeStack, table: str) -> set[tuple]:
    """Every row of a table of the MLflow database."""
    return set(pg_rows(stack, f"SELECT * FROM {table}"))


def runs_by_id(stack: NativeStack) -> dict[str, tuple]:
    """run_uuid: (name, status, lifecycle, end_time, experiment) of every run."""
    rows = pg_rows(stack, "SELECT run_uuid, name, status, lifecycle_stage, end_time, "
                   "experiment_id FROM runs")  # fmt: skip
    return {row[0]: row[1:] for row in rows}


def bucket(stack: NativeStack) -> dict[str, str]:
    """key: sha256 of every object in the stack's bucket."""
    s3 = stack.s3_client()
    out = {}
    for key in s3_keys(stack):
        body = s3.get_object(Bucket=stack.config.bucket, Key=key)["Body"].read()
        out[key] = hashlib.sha256(body).hexdigest()
    return out


def snapshot(stack: NativeStack) -> dict[str, object]:
    """What the comparisons need: tables, runs, and the bucket's keys."""
    tables = {t: table_rows(stack, t) for t in APPEND_ONLY + STILL}
    return {"tables": tables, "runs": runs_by_id(stack), "keys": set(s3_keys(stack))}


def prefect_flow_runs(stack: NativeStack) -> dict[str, str]:
    """name: state type of every flow run the stack's Prefect server knows."""
    resp = requests.post(f"{stack.config.prefect_api_url}/flow_runs/filter", json={}, timeout=30)
    resp.raise_for_status()
    return {run["name"]: run.get("state_type") for run in resp.json()}


FLOW = """
from prefect import flow

@flow(name="bk-check")
def bk_check() -> str:
    from prefect.runtime import flow_run

    return flow_run.name

print("flow run:", bk_check())
"""


@dataclass
class Backed:
    """The source stack's story: what it held when the backup began and when it ended."""

    backup_dir: Path
    before: dict[str, object]  # snapshot taken just before `backup` started
    final: dict[str, object]  # after the backup and the writers stopped
    final_bucket: dict[str, str]
    acked_before: list[str]  # writer runs acknowledged before `backup` started
    bulk_runs: list[str]
    flow_run: str  # the name of the flow run the test ran (the runner's own come and go)
    backup_out: str


@pytest.fixture(scope="module")
def wine_csv_path(tmp_path_factory) -> Path:
    """The team's wine CSV, else a generated one."""
    if SHARED_WINE_CSV.exists():
        return SHARED_WINE_CSV
    return write_uci_csv(make_wine_frame(1600, seed=5), tmp_path_factory.mktemp("d") / "w.csv")


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def backed(tmp_path_factory, wine_csv_path: Path) -> Iterator[Backed]:
    """Populate a stack, back it up under load, snapshot it, then wipe it (down --purge)."""
    source = start_stack(stack_state_dir(), pipelines=True, retrain_models="wine",
                         retrain_every_min=60)  # fmt: skip
    work = tmp_path_factory.mktemp("bk")
    try:
        env = client_env(source.config.tracking_uri, work, wine_csv_path)
        env["PREFECT_API_URL"] = source.config.prefect_api_url
        env["PREFECT_HOME"] = str(work / "prefect")
        # Registered versions with aliases: v1 champion, v2 by what it scores.
        for alpha in ("0.5", "0.1"):
            _ok(run_entry(["train.py", "--alpha", alpha, "--register-as", MODEL], env, 600))
        bulk = log_runs(source.config.tracking_uri, experiments=3, runs_per_experiment=18)
        # A prediction log (our server's run) and a monitoring run over it.
        port = free_port()
        uri = f"models:/{MODEL}@champion"
        cmd = [sys.executable, "-m", "mlstack.serving", "--model-uri", uri, "--port", str(port),
               "--log-predictions", "mlflow", "--log-flush-s", "1"]  # fmt: skip
        with http_server(cmd, env, port, "our server") as url:
            _ok(run_entry(["-m", "mlstack.monitor.simulate", "--server-url", url, "--kind",
                           "wine", "--clean", "150", "--shifted", "0", "--data",
                           str(wine_csv_path)], env, 600))  # fmt: skip
        monitor = run_entry(["-m", "mlstack.monitor", "--model", MODEL, "--last", "150"], env)
        assert monitor.returncode in (0, 3), monitor.stdout[-1500:] + monitor.stderr[-2000:]
        said = _ok(run_entry(["-c", FLOW], env, 300)).splitlines()
        flow_run = next(ln.split(": ", 1)[1] for ln in said if ln.startswith("flow run: "))
        assert prefect_flow_runs(source).get(flow_run) == "COMPLETED", flow_run

        writers = Writers(source.config.tracking_uri).start()
        deadline = time.monotonic() + 60
        while len(writers.acks) < 8 and time.monotonic() < deadline:
            time.sleep(0.2)
        before = snapshot(source)
        started = time.time()
        acked_before = [a.run_id for a in list(writers.acks) if a.at < started]
        out = _ok(stack_cli(source, "backup", "--to", str(work / "backup")))
        acks_during = [a for a in list(writers.acks) if a.at > started]
        writers.stop()
        assert not writers.errors, writers.errors[:3]
        assert acks_during, "the writers logged nothing while the backup ran"
        final, final_bucket = snapshot(source), bucket(source)
    finally:
        source.down(purge=True)
    assert not source.config.state_dir.exists()
    yield Backed(work / "backup", before, final, final_bucket, acked_before, bulk, flow_run, out)


@pytest.fixture(scope="module")
def restored(backed: Backed) -> Iterator[tuple[NativeStack, str]]:
    """A fresh stack (with Prefect) and the output of `restore --from` the backup into it."""
    target = start_stack(stack_state_dir(), pipelines=True, retrain_models="wine",
                         retrain_every_min=60)  # fmt: skip
    try:
        out = _ok(stack_cli(target, "restore", "--from", str(backed.backup_dir)))
        yield target, out
    finally:
        target.down(purge=True)


def test_the_manifest_describes_the_backup(backed: Backed) -> None:
    manifest = json.loads((backed.backup_dir / "manifest.json").read_text())
    assert set(manifest["databases"]) >= {"mlflow", "prefect"}
    assert manifest["counts"]["runs"] >= 50 + len(backed.acked_before)
    assert manifest["schema_revision"] and manifest["mlflow_version"]
    for entry in manifest["objects"]:
        path = backed.backup_dir / "objects" / entry["sha256"][:2] / entry["sha256"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert "backup complete" in backed.backup_out


def test_restore_brings_back_exactly_what_the_backup_holds(restored, backed: Backed) -> None:
    target, out = restored
    assert "restore complete" in out
    manifest = json.loads((backed.backup_dir / "manifest.json").read_text())
    # File by file: the bucket holds the backup's objects, each as the source had it.
    got = bucket(target)
    assert got == {o["key"]: o["sha256"] for o in manifest["objects"]}
    assert all(backed.final_bucket[key] == sha for key, sha in got.items())
    assert backed.before["keys"] <= set(got)  # every object there when the backup began
    # Row by row: append-only tables hold every row of the start, and nothing the source
    # never had; the registry, untouched meanwhile, is equal.
    for table in APPEND_ONLY:
        rows = table_rows(target, table)
        assert backed.before["tables"][table] <= rows <= backed.final["tables"][table], table
    for table in STILL:
        assert table_rows(target, table) == backed.final["tables"][table], table
    # Run by run: every run that existed at the start is there; those not being written are
    # exactly as the source ended them.
    runs = runs_by_id(target)
    assert set(backed.before["runs"]) <= set(runs) <= set(backed.final["runs"])
    for run_id in backed.bulk_runs:
        assert runs[run_id] == backed.final["runs"][run_id]
    assert len(runs) == manifest["counts"]["runs"]


def test_every_write_acknowledged_before_the_backup_is_restored(restored, backed) -> None:
    target, _ = restored
    runs = runs_by_id(target)
    assert backed.acked_before
    missing = [rid for rid in backed.acked_before if rid not in runs]
    assert not missing
    for rid in backed.acked_before:
        assert runs[rid][1] == "FINISHED"
        steps = pg_rows(target, "SELECT count(*) FROM metrics WHERE run_uuid = %s", rid)
        assert steps[0][0] == 3
    keys = set(s3_keys(target))
    for rid in backed.acked_before:
        assert any(k.endswith(f"{rid}/artifacts/out.txt") for k in keys), rid


def test_the_restored_stack_serves_the_champion_and_keeps_its_logs(
    restored, backed: Backed, tmp_path: Path, wine_csv_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    target, _ = restored
    client = MlflowClient(target.config.tracking_uri, registry_uri=target.config.tracking_uri)
    assert {v.version for v in client.search_model_versions(f"name='{MODEL}'")} == {"1", "2"}
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert client.get_run(champion.run_id).data.metrics
    for name in (f"{MODEL}-predictions", f"{MODEL}-monitoring"):
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None, name
        assert client.search_runs([experiment.experiment_id]), name
    assert prefect_flow_runs(target).get(backed.flow_run) == "COMPLETED", backed.flow_run
    env = client_env(target.config.tracking_uri, tmp_path, wine_csv_path)
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.serving", "--model-uri", f"models:/{MODEL}@champion",
           "--port", str(port)]  # fmt: skip
    body = scoring_requests(make_wine_frame(5, seed=3).drop(columns=["quality"]))
    with http_server(cmd, env, port, "our server on the restored stack") as url:
        resp = requests.post(f"{url}/invocations", json=body["dataframe_split"], timeout=30)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["predictions"]) == 5


def _damaged_copy(backup: Path, how: str) -> Path:
    copy = Path(tempfile.mkdtemp(prefix="bk-damaged-")) / "b"
    shutil.copytree(backup, copy)
    if how == "object":
        victim = next(p for p in (copy / "objects").rglob("*") if p.is_file())
        data = bytearray(victim.read_bytes())
        data[0] ^= 0xFF
        victim.write_bytes(bytes(data))
    elif how == "truncated dump":
        dump = copy / "databases" / "mlflow.dump"
        dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    elif how == "manifest":
        manifest = copy / "manifest.json"
        manifest.write_text(manifest.read_text()[:-40])
    elif how == "missing object":
        next(p for p in (copy / "objects").rglob("*") if p.is_file()).unlink()
    return copy


@pytest.mark.parametrize("how", ["object", "truncated dump", "manifest", "missing object"])
def test_a_damaged_backup_is_refused_and_nothing_changes(restored, backed, how: str) -> None:
    target, _ = restored
    runs, keys = runs_by_id(target), set(s3_keys(target))
    mlflow_pid = target.pids.alive_pid("mlflow")
    damaged = _damaged_copy(backed.backup_dir, how)
    proc = stack_cli(target, "restore", "--force", "--from", str(damaged))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = proc.stderr.strip()
    assert len(error.splitlines()) == 1 and "damaged" in error, error
    assert "nothing was changed" in error, error
    assert runs_by_id(target) == runs and set(s3_keys(target)) == keys
    assert target.pids.alive_pid("mlflow") == mlflow_pid  # not even restarted


def test_restore_into_a_stack_holding_data_needs_force(restored, backed: Backed) -> None:
    target, _ = restored
    proc = stack_cli(target, "restore", "--from", str(backed.backup_dir))
    assert proc.returncode == 2
    assert "not empty" in proc.stderr and "--force" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_backup_refuses_a_directory_that_holds_files(restored, tmp_path: Path) -> None:
    target, _ = restored
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("mine")
    proc = stack_cli(target, "backup", "--to", str(tmp_path / "old"))
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert (tmp_path / "old" / "keep.txt").read_text() == "mine"
