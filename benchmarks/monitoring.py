"""Monitoring benchmark: how long one check takes, and how well the drift rule separates clean
from shifted traffic.

    make bench-monitoring                                 # timing table (~5 min)
    .venv/bin/python -m benchmarks.monitoring --calibrate # false alarms / detection (~3 min)

Timing: a throwaway native stack (PostgreSQL, S3, MLflow server) gets a wine and a digits
model; a prediction log of N single-row requests (made the way the server writes it: Parquet
batches of 1,000 in a run's artifacts, so in the bucket) is checked by `monitor()` in a fresh
process: reading the log from S3 through the server, parsing every request, the Evidently
report, logging the run. The reference column is the Evidently report alone on the same
prepared tables, measured in the same process (the part no implementation can skip); the
imports (MLflow, Evidently) that a fresh process pays once are shown apart and in the total.
Peak memory is the process's maximum resident set. Goal: 10,000 wine rows in under 5 s.

Calibration: windows of 200 rows from the in-distribution traffic and from the shifted traffic
of mlstack.monitor.shifts (what `python -m mlstack.monitor.simulate` sends), against a model
trained with the defaults; the share of windows called drifted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlstack.settings import PROJ_ROOT, Settings

SHARED_WINE = PROJ_ROOT.parent / "shared" / "data" / "winequality-red.csv"
# The team's copy beside the checkout, else the settings' default (downloaded once).
WINE_DATA = str(SHARED_WINE) if SHARED_WINE.exists() else None
SIZES = {"wine": (1_000, 10_000, 100_000), "digits": (1_000,)}


def _settings(store: Path) -> Settings:
    data = {"wine_data": WINE_DATA} if WINE_DATA else {}
    return Settings(_env_file=None, tracking_uri=None, store_dir=store, **data)


def upload_log(client, kind: str, n: int, name: str, experiment_id: str) -> str:
    """A prediction-log run of `n` simulated requests answered by `name`@champion, in Parquet
    batches of 1,000 as the server writes them; its run id."""
    from mlstack import logstore
    from mlstack.monitor.simulate import log_offline
    from mlstack.serving.predlog import MlflowRunSink  # the server's own writer

    with tempfile.TemporaryDirectory(prefix="mlstack-bench-log-") as tmp:
        log_offline(f"models:/{name}@champion", kind, n, Path(tmp), data=WINE_DATA)
        frame = logstore.load_prediction_log(tmp)
    run = client.create_run(experiment_id, tags={logstore.KIND_TAG: logstore.PREDICTION_LOG_KIND})
    sink = MlflowRunSink(client, run.info.run_id)
    for i, start in enumerate(range(0, len(frame), 1000)):
        sink.write(f"predictions-{i:06d}", frame.iloc[start : start + 1000])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def time_one(model: str, n: int) -> dict:
    """In this (fresh) process: monitor `model`'s log end to end, then Evidently alone."""
    import resource

    started = time.perf_counter()
    import evidently  # noqa: F401 (imported lazily by the check; timed here on its own)
    import mlflow

    from mlstack.monitor.run import monitor

    imports = time.perf_counter() - started
    started = time.perf_counter()
    result = monitor(model, last=n)
    check = time.perf_counter() - started

    from mlstack.monitor.drift import compare
    from mlstack.monitor.reference import load_reference
    from mlstack.monitor.window import find_log, read_log, select

    client = mlflow.MlflowClient()
    reference = load_reference(client, model, result.version)
    log = read_log(find_log(client, model, None), client)
    window = select(log, result.version, reference.profile, last=n)
    started = time.perf_counter()
    compare(reference.frame, window.rows, reference.profile)
    evidently_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": result.rows, "imports_s": imports, "check_s": check,
            "evidently_s": evidently_s, "peak_mb": peak}  # fmt: skip


def timing(args: argparse.Namespace) -> None:
    """Start a stack, train both models, upload logs, time each size in a fresh process."""
    import mlflow

    from mlstack import digits, wine
    from mlstack.stack import NativeStack, StackConfig, find_free_ports

    state = Path(tempfile.mkdtemp(prefix="mlstack-bench-monitor-", dir="/var/tmp"))
    state.chmod(0o755)
    stack = NativeStack(StackConfig(state_dir=state, **find_free_ports()))
    print("starting a throwaway native stack ...", flush=True)
    stack.up(echo=lambda line: print("  " + line, flush=True))
    uri = stack.config.tracking_uri
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env |= {"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    os.environ |= env
    try:
        settings = _settings(state / "unused").model_copy(update={"tracking_uri": uri})
        print("training wine and digits ...", flush=True)
        wine.train(wine.WineParams(), register_as="bench-wine", settings=settings)
        digits.train(digits.DigitsParams(epochs=3), register_as="bench-digits",
                     settings=settings, verbose=0)  # fmt: skip
        client = mlflow.MlflowClient(uri)
        rows = []
        for kind, sizes in SIZES.items():
            name = f"bench-{kind}"
            for n in sizes:
                experiment = f"{name}-predictions"
                mlflow.set_experiment(experiment)  # creates it
                experiment_id = client.get_experiment_by_name(experiment).experiment_id
                print(f"uploading a {n}-row {kind} log ...", flush=True)
                upload_log(client, kind, n, name, experiment_id)
                code = f"import json, benchmarks.monitoring as b; print(json.dumps(b.time_one({name!r}, {n})))"  # noqa: E501
                proc = subprocess.run([sys.executable, "-c", code], env=os.environ.copy(),
                                      capture_output=True, text=True, cwd=PROJ_ROOT)  # fmt: skip
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-2000:])
                rows.append((kind, json.loads(proc.stdout.strip().splitlines()[-1])))
        print("\none check (log read from S3 through the server, parsed, Evidently, run logged)")
        print(f"{'model':7} {'rows':>7} | {'check s':>8} {'evidently s':>12} {'ratio':>6} | "
              f"{'imports s':>9} {'total s':>8} | peak MB")  # fmt: skip
        for kind, r in rows:
            ratio = r["check_s"] / r["evidently_s"]
            total = r["imports_s"] + r["check_s"]
            print(f"{kind:7} {r['rows']:7d} | {r['check_s']:8.2f} {r['evidently_s']:12.2f} "
                  f"{ratio:5.1f}x | {r['imports_s']:9.2f} {total:8.2f} | "
                  f"{r['peak_mb']:7.0f}")  # fmt: skip
    finally:
        stack.down(purge=True)


def calibrate(args: argparse.Namespace) -> None:
    """Drift calls on clean and shifted windows against freshly trained models."""
    import numpy as np

    from mlstack import digits, wine
    from mlstack.monitor.drift import compare
    from mlstack.monitor.profiles import PROFILES
    from mlstack.monitor.reference import ARTIFACT_DIR, TABLE
    from mlstack.monitor.simulate import digit_images, wine_rows

    with tempfile.TemporaryDirectory(prefix="mlstack-calibrate-") as store:
        settings = _settings(Path(store))
        import mlflow

        trained = {
            "wine": wine.train(wine.WineParams(), settings=settings),
            "digits": digits.train(digits.DigitsParams(), settings=settings, verbose=0),
        }
        print(f"{'model':7} {'windows':>8} {'rows':>5} | {'clean: drift called':>20} "
              f"{'max share':>9} | {'shifted: drift called':>22} {'min share':>9}")  # fmt: skip
        for kind, result in trained.items():
            profile = PROFILES[kind]
            folder = mlflow.artifacts.download_artifacts(run_id=result.run_id,
                                                         artifact_path=ARTIFACT_DIR)  # fmt: skip
            import pandas as pd

            reference = pd.read_parquet(Path(folder) / TABLE)
            model = mlflow.pyfunc.load_model(result.model_uri)
            calls: dict[str, list[float]] = {"clean": [], "shifted": []}
            for phase in calls:
                for w in range(args.windows):
                    seed = 1000 + w
                    if kind == "wine":
                        rows = wine_rows(WINE_DATA, args.rows, seed, phase == "shifted")
                        inputs = rows.drop(columns=["quality"])
                    else:
                        inputs, _ = digit_images(args.rows, seed, phase == "shifted")
                    current = profile.rows(inputs, list(np.asarray(model.predict(inputs))))
                    calls[phase].append(compare(reference, current, profile).share)
            clean, shifted = np.array(calls["clean"]), np.array(calls["shifted"])
            threshold = profile.drift_share
            print(f"{kind:7} {args.windows:8d} {args.rows:5d} | "
                  f"{int((clean >= threshold).sum()):>12d} of {args.windows:<4d} {clean.max():9.2f}"
                  f" | {int((shifted >= threshold).sum()):>14d} of {args.windows:<4d}"
                  f" {shifted.min():9.2f}   (threshold {threshold})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.monitoring", description=__doc__)
    p.add_argument("--calibrate", action="store_true", help="false alarms and detection instead")
    p.add_argument("--windows", type=int, default=20, help="windows per phase (calibration)")
    p.add_argument("--rows", type=int, default=200, help="rows per window (calibration)")
    args = p.parse_args(argv)
    from mlstack.cli import quiet_third_party_logs

    quiet_third_party_logs()
    calibrate(args) if args.calibrate else timing(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
