"""Monitoring benchmark: how long one check takes, and how well the drift rule separates clean
from shifted traffic.

    make bench-monitoring                                 # timing table (~5 min)
    .venv/bin/python -m benchmarks.monitoring --calibrate # false alarms / detection (~3 min)

Timing: a throwaway native stack (PostgreSQL, S3, MLflow server) gets a wine and a digits
model; a prediction log of N single-row requests (made the way the server writes it: Parquet
batches of 1,000 in a run's artifacts, so in the bucket) is checked by `monitor()` in a fresh
process: reading the log from S3 through the server, parsing every request, the decision
(mlstack.monitor.rules) and Evidently's report, logging the run. The reference column is the
comparison alone (the decision and the report) on the same prepared tables, measured in the
same process (the part no implementation can skip); the
imports (MLflow, Evidently) that a fresh process pays once are shown apart and in the total.
Peak memory is the process's maximum resident set. Goal: 10,000 wine rows in under 5 s.

Calibration (`--calibrate`, ~3 min for both models): a quarter of each data set is held out
of training entirely (the pool); a model is trained with the defaults on the rest, and its
reference is its own held-out split. Windows of 100, 200, 500 and 1,000 rows are drawn with
replacement from the pool: as they are (false alarms, `--clean` windows per size) and moved
by each shift (`--shifted` per shift and size). Wine: the 5 features the model leans on
most, each by half and by one of its standard deviations; the least important by 0.3 (under
its column threshold); all 11 by 0.2; the designed warm region; relations broken with every
column's distribution kept. Digits: thicker strokes, a slant, the most important cell erased,
the designed new handwriting. Each cell is how many windows were called drift; the last
column says which tests caught them at 500 rows (columns, the domain classifier, or both).
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
    """In this (fresh) process: monitor `model`'s log end to end, then the comparison alone
    (the decision and Evidently's report) on the same prepared tables."""
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
    compare(reference.frame, window.rows, reference.profile, importance=reference.importance)
    compare_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": result.rows, "imports_s": imports, "check_s": check,
            "compare_s": compare_s, "peak_mb": peak}  # fmt: skip


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
        print("\none check (log read from S3 through the server, parsed, compared, run logged)")
        print(f"{'model':7} {'rows':>7} | {'check s':>8} {'compare s':>10} {'ratio':>6} | "
              f"{'imports s':>9} {'total s':>8} | peak MB")  # fmt: skip
        for kind, r in rows:
            ratio = r["check_s"] / r["compare_s"]
            total = r["imports_s"] + r["check_s"]
            print(f"{kind:7} {r['rows']:7d} | {r['check_s']:8.2f} {r['compare_s']:10.2f} "
                  f"{ratio:5.1f}x | {r['imports_s']:9.2f} {total:8.2f} | "
                  f"{r['peak_mb']:7.0f}")  # fmt: skip
    finally:
        stack.down(purge=True)


WINDOW_SIZES = (100, 200, 500, 1000)
TOP_FEATURES = 5
THIN_SD = 0.2  # every wine feature moved by this many standard deviations at once
QUIET_SD = 0.3  # under large_effect: as a column move, not drift for a column the model ignores


def _split_pool(kind: str, folder: Path, seed: int = 0):
    """Hold a quarter of the data out of training entirely: the pool clean windows are drawn
    from (new rows of the same population, never seen by the model or its reference). The
    rest is written where `train` reads it; returns (training data path, pool)."""
    import numpy as np

    from mlstack.data import load_wine

    rng = np.random.default_rng(seed)
    if kind == "wine":
        frame = load_wine(WINE_DATA, _settings(folder)).frame
        pool_rows = rng.permutation(len(frame))[: len(frame) // 4]
        pool = frame.iloc[pool_rows].reset_index(drop=True)
        path = folder / "wine-train.csv"
        frame.drop(index=frame.index[pool_rows]).to_csv(path, sep=";", index=False)
        return str(path), pool
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = (bunch.images / 16.0).astype("float32")[..., None], bunch.target.astype("int64")
    order = rng.permutation(len(x))
    pool, rest = order[: len(x) // 4], order[len(x) // 4 :]
    path = folder / "digits-train.npz"
    np.savez(path, x=x[rest], y=y[rest])
    return str(path), (x[pool], y[pool])


def _scenarios(kind: str, pool, reference, importance: dict[str, float]) -> dict:
    """Name -> the pool as that scenario sends it (clean first)."""
    from mlstack.data import WINE_FEATURES
    from mlstack.monitor import shifts
    from mlstack.monitor.rules import spread

    if kind == "wine":
        sd = {c: spread(reference[c].to_numpy()) for c in WINE_FEATURES}
        top = sorted(importance, key=lambda c: -importance[c])[:TOP_FEATURES]
        out = {"clean": pool}
        for rank, column in enumerate(top, 1):
            for amount in (0.5, 1.0):
                name = f"{column} +{amount:g} sd (rank {rank})"
                out[name] = shifts.move_columns(pool, {column: amount * sd[column]})
        # Under its column threshold: a moderate move of the column the model leans on least.
        least = min(importance, key=importance.get)
        out[f"{least} +{QUIET_SD:g} sd (rank {len(importance)})"] = shifts.move_columns(
            pool, {least: QUIET_SD * sd[least]}
        )
        out[f"all 11 features +{THIN_SD:g} sd"] = shifts.move_columns(
            pool, {c: THIN_SD * sd[c] for c in WINE_FEATURES}
        )
        out["warm region (designed)"] = shifts.warm_region(pool)
        out["broken relations (marginals kept)"] = shifts.broken_relations(pool)
        return out
    images, _ = pool
    regions = sorted((c for c in importance if c.startswith("region_")),
                     key=lambda c: -importance[c])  # fmt: skip
    r, c = int(regions[0][-2]), int(regions[0][-1])
    band = lambda i: slice(2 * i, 2 * i + 2)  # noqa: E731 (8x8 images: 2-pixel cells)
    return {
        "clean": images,
        "thicker strokes": shifts.thicker_strokes(images),
        "slant 0.25 px/row": shifts.slanted(images),
        f"{regions[0]} erased (the most important cell)": shifts.erased_region(
            images, band(r), band(c)
        ),
        "new handwriting (designed)": shifts.new_handwriting(images),
    }


def calibrate(args: argparse.Namespace) -> None:
    """False alarms on clean windows and detection of shifts, per window size, against models
    trained (with the defaults) on data the windows are not drawn from."""
    import mlflow
    import numpy as np
    import pandas as pd

    from mlstack import digits, wine
    from mlstack.monitor.drift import compare
    from mlstack.monitor.profiles import PROFILES
    from mlstack.monitor.reference import ABOUT, ARTIFACT_DIR, TABLE
    from mlstack.monitor.rules import Thresholds

    print(f"thresholds: {Thresholds()}")
    with tempfile.TemporaryDirectory(prefix="mlstack-calibrate-") as store:
        settings = _settings(Path(store))
        for kind in args.models.split(","):
            profile = PROFILES[kind]
            data, pool = _split_pool(kind, Path(store))
            print(f"\ntraining {kind} on all but a quarter of its data ...", flush=True)
            if kind == "wine":
                result = wine.train(wine.WineParams(), data=data, settings=settings)
            else:
                result = digits.train(digits.DigitsParams(), data=data, settings=settings,
                                      verbose=0)  # fmt: skip
            folder = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=result.run_id, artifact_path=ARTIFACT_DIR
                )
            )
            reference = pd.read_parquet(folder / TABLE)
            importance = json.loads((folder / ABOUT).read_text()).get("importance", {})
            model = mlflow.pyfunc.load_model(result.model_uri)
            scenarios = _scenarios(kind, pool, reference, importance)
            print(f"{kind}: reference {len(reference)} held-out rows; windows drawn with "
                  f"replacement from {len(scenarios['clean'])} rows never trained on; "
                  f"{args.clean} clean and {args.shifted} shifted windows per size")  # fmt: skip
            header = " ".join(f"{n:>9d}" for n in WINDOW_SIZES)
            print(f"{'window rows':44} {header}   caught by (at {WINDOW_SIZES[2]})")
            for name, inputs in scenarios.items():
                features = inputs.drop(columns=["quality"]) if kind == "wine" else inputs
                table = profile.rows(features, list(np.asarray(model.predict(features))))
                windows = args.clean if name == "clean" else args.shifted
                cells, caught = [], {}
                for n in WINDOW_SIZES:
                    rng = np.random.default_rng(n)
                    calls = 0
                    for _ in range(windows):
                        window = table.iloc[rng.integers(0, len(table), n)].reset_index(drop=True)
                        verdict = compare(reference, window, profile, importance=importance,
                                          report=False).verdict  # fmt: skip
                        calls += verdict.drift
                        if n == WINDOW_SIZES[2] and verdict.drift:
                            by = "columns" if verdict.moved else "domain"
                            by = "both" if verdict.moved and verdict.domain.drifted else by
                            caught[by] = caught.get(by, 0) + 1
                    cells.append(f"{calls:>4d} of {windows:<3d}")
                by = ", ".join(f"{k} {v}" for k, v in sorted(caught.items())) or "-"
                label = "clean: false alarms" if name == "clean" else name
                print(f"{label:44} {' '.join(cells)}   {by}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.monitoring", description=__doc__)
    p.add_argument("--calibrate", action="store_true", help="false alarms and detection instead")
    p.add_argument("--clean", type=int, default=50, help="clean windows per size (calibration)")
    p.add_argument("--shifted", type=int, default=20, help="windows per shift and size")
    p.add_argument("--models", default="wine,digits", help="which to calibrate (calibration)")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: a readable table
    from mlstack.cli import quiet_third_party_logs

    quiet_third_party_logs()
    calibrate(args) if args.calibrate else timing(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
