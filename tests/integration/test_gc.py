"""Garbage collection on real services (`python -m mlstack.stack gc --older-than 30d`): runs and
experiments deleted longer ago than the limit go for good, with their artifacts in the bucket;
everything else, in the database and in the bucket, is untouched. A deleted run that still
backs a registered model version stops gc until that is settled.

"Deleted 40 days ago" is made by moving the deletion times back in PostgreSQL: MLflow has no
API to delete in the past, and the age rule is what is under test.
"""

from __future__ import annotations

import os
import time

import psycopg2
import pytest
from mlflow.tracking import MlflowClient

from mlstack.stack import NativeStack
from tests.helpers import run_entry
from tests.integration.conftest import pg_rows, s3_keys

DAY_MS = 86_400_000


def pg_exec(stack: NativeStack, sql: str, *args: object) -> None:
    """Run one statement on the backend store and commit it."""
    conn = psycopg2.connect(host="127.0.0.1", port=stack.config.pg_port, user="mlflow",
                            password=stack.creds.db_password, dbname="mlflow")  # fmt: skip
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
    finally:
        conn.close()


def gc_cli(stack: NativeStack, *args: str):
    argv = ["-m", "mlstack.stack", "gc", *args, "--state-dir", str(stack.config.state_dir)]
    return run_entry(argv, dict(os.environ), timeout=600)


def _run_with_files(client: MlflowClient, experiment_id: str, name: str) -> str:
    run = client.create_run(experiment_id, run_name=name)
    client.log_metric(run.info.run_id, "m", 1.0)
    client.log_text(run.info.run_id, name, "a.txt")
    client.log_dict(run.info.run_id, {"n": name}, "sub/b.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


MODEL_RUN = """
import sys
import mlflow, pandas as pd
from sklearn.linear_model import LinearRegression
frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]})
with mlflow.start_run(experiment_id=sys.argv[1]) as run:
    mlflow.log_input(mlflow.data.from_pandas(frame, name="train"), context="training")
    mlflow.sklearn.log_model(LinearRegression().fit(frame[["x"]], frame["y"]), name="model")
    mlflow.log_text("t", "a.txt")
print(run.info.run_id)
"""


def _run_with_model(stack: NativeStack, experiment_id: str) -> str:
    """A run with a dataset input and a logged model (rows in inputs, logged_models...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": stack.config.tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = run_entry(["-c", MODEL_RUN, experiment_id], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def _keys_of(stack: NativeStack, run_id: str) -> list[str]:
    return [k for k in s3_keys(stack) if f"/{run_id}/" in k]


def _age(stack: NativeStack, days: float, run_ids=(), experiment_ids=()) -> None:
    then = int(time.time() * 1000 - days * DAY_MS)
    for rid in run_ids:
        pg_exec(stack, "UPDATE runs SET deleted_time = %s WHERE run_uuid = %s", then, rid)
    for eid in experiment_ids:
        pg_exec(stack, "UPDATE experiments SET last_update_time = %s WHERE experiment_id = %s",
                then, int(eid))  # fmt: skip


def _exists(stack: NativeStack, run_id: str) -> bool:
    return bool(pg_rows(stack, "SELECT 1 FROM runs WHERE run_uuid = %s", run_id))


@pytest.fixture
def scene(stack: NativeStack):
    """Kept runs, a run deleted 40 days ago, one deleted today, an experiment deleted 40
    days ago (with runs) and one deleted today, each with files in the bucket."""
    client = MlflowClient(stack.config.tracking_uri, registry_uri=stack.config.tracking_uri)
    tag = str(time.time_ns())
    keep_exp = client.create_experiment(f"gc-keep-{tag}")
    live = _run_with_files(client, keep_exp, "live")
    old = _run_with_files(client, keep_exp, "deleted-40d")
    recent = _run_with_files(client, keep_exp, "deleted-today")
    client.delete_run(old)
    client.delete_run(recent)
    _age(stack, 40, run_ids=[old])
    gone_exp = client.create_experiment(f"gc-old-exp-{tag}")
    gone_runs = [_run_with_files(client, gone_exp, f"in-old-exp-{i}") for i in range(2)]
    gone_runs.append(_run_with_model(stack, gone_exp))
    client.delete_experiment(gone_exp)
    # As if deleted then: the experiment, and its runs that its deletion deleted.
    _age(stack, 40, run_ids=gone_runs, experiment_ids=[gone_exp])
    young_exp = client.create_experiment(f"gc-young-exp-{tag}")
    young_run = _run_with_files(client, young_exp, "in-young-exp")
    client.delete_experiment(young_exp)
    return {
        "client": client, "live": live, "old": old, "recent": recent, "gone_exp": gone_exp,
        "gone_runs": gone_runs, "young_exp": young_exp, "young_run": young_run,
    }  # fmt: skip


def test_gc_removes_only_what_was_deleted_long_enough_ago(stack: NativeStack, scene) -> None:
    doomed = [scene["old"], *scene["gone_runs"]]
    doomed_keys = {k for rid in doomed for k in _keys_of(stack, rid)}
    assert all(_keys_of(stack, rid) for rid in doomed)
    before = set(s3_keys(stack))

    dry = gc_cli(stack, "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "4 deleted runs, 1 deleted experiments" in dry.stdout, dry.stdout
    assert set(s3_keys(stack)) == before and all(_exists(stack, r) for r in doomed)

    proc = gc_cli(stack, "--older-than", "30d")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "gc: done" in proc.stdout
    after = set(s3_keys(stack))
    # The experiment's files went (its runs' and its logged models'), and no other.
    exp_keys = {k for k in before if k.startswith(f"artifacts/{scene['gone_exp']}/")}
    model_keys = {k for k in exp_keys if "/models/m-" in k}
    assert model_keys, "the logged model's files were not in the bucket to begin with"
    assert after == before - doomed_keys - exp_keys
    assert not any(_exists(stack, rid) for rid in doomed)
    assert not pg_rows(stack, "SELECT 1 FROM experiments WHERE experiment_id = %s",
                       int(scene["gone_exp"]))  # fmt: skip
    for rid in (scene["live"], scene["recent"], scene["young_run"]):
        assert _exists(stack, rid) and _keys_of(stack, rid), rid
    client = scene["client"]
    assert client.get_experiment(scene["young_exp"]).lifecycle_stage == "deleted"
    assert client.get_run(scene["recent"]).info.lifecycle_stage == "deleted"


def test_gc_refuses_while_a_deleted_run_backs_a_model_version(stack: NativeStack, scene) -> None:
    client = scene["client"]
    name = f"gc-backed-{time.time_ns()}"
    client.create_registered_model(name)
    run = client.get_run(scene["old"])
    source = f"{run.info.artifact_uri}/sub"  # registered from the run's files, as MLflow 2 did
    from_run = client.create_model_version(name, source, run_id=run.info.run_id)
    # And MLflow 3's way: a logged model of the experiment that would go.
    models = client.search_logged_models([scene["gone_exp"]])
    assert len(models) == 1, models
    model = models[0]
    from_model = client.create_model_version(name, f"models:/{model.model_id}",
                                             model_id=model.model_id)  # fmt: skip
    before = set(s3_keys(stack))
    proc = gc_cli(stack, "--older-than", "30d")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{name}/{from_run.version} (run {scene['old']})" in proc.stderr, proc.stderr
    assert f"{name}/{from_model.version} (logged model {model.model_id})" in proc.stderr, (
        proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert set(s3_keys(stack)) == before and _exists(stack, scene["old"])
    for version in (from_run, from_model):
        client.delete_model_version(name, version.version)
    proc = gc_cli(stack, "--older-than", "30d")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not _exists(stack, scene["old"])


@pytest.mark.parametrize("age", ["30 days", "3w", "", "d"])
def test_gc_with_an_age_it_cannot_read_says_how_to_write_one(stack: NativeStack, age) -> None:
    proc = gc_cli(stack, "--older-than", age)
    assert proc.returncode == 2
    assert "e.g. 30d" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
