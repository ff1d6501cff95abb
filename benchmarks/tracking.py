"""Tracking benchmark: what logging to the team server costs, measured in one run.

    make bench-tracking            # starts a throwaway native stack on free ports
    .venv/bin/python -m benchmarks.tracking --tracking-uri http://127.0.0.1:5000

Rows (median of --repeats after two warm-up runs):
- wine run overhead: a full `wine.train` (fit, params, metrics, dataset, plot, log_model with
  signature + example, registration, promotion) minus the bare fit+evaluate in-process.
  Reference: the same work done the way MLflow's examples do it (log_model without explicit
  requirements, so MLflow infers them; register_model; per-tag calls).
- log_batch throughput: metric points per second with 1 and 8 concurrent client processes.
  Reference: the same points sent one log_metric call at a time (1 client).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlstack.settings import PROJ_ROOT, Settings

SHARED_WINE = PROJ_ROOT.parent / "shared" / "data" / "winequality-red.csv"
POINTS = 5_000


WARMUP = 2  # a fresh server's first two runs pay for its lazy imports (measured 8.7 s, 3.6 s)


def _median_seconds(fn, repeats: int) -> float:
    for _ in range(WARMUP):  # steady state is what a long-running team server sees
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_wine(settings: Settings, data: str, repeats: int) -> dict[str, float]:
    """Seconds for the bare fit, our full run, and the MLflow-defaults reference run."""
    import mlflow
    import mlflow.sklearn

    from mlstack import tracking, wine
    from mlstack.data import load_wine

    params = wine.WineParams(alpha=0.3)
    table = load_wine(data, settings)

    def bare() -> None:
        x_train, x_test, y_train, y_test = wine.split(table, params)
        wine.evaluate(wine.fit(x_train, y_train, params), x_test, y_test)

    def ours() -> None:
        wine.train(
            params, data=data, experiment="bench", register_as="bench-wine", settings=settings
        )

    def reference() -> None:
        tracking.ensure_experiment("bench-reference", settings)
        with mlflow.start_run():
            x_train, x_test, y_train, y_test = wine.split(table, params)
            model = wine.fit(x_train, y_train, params)
            mlflow.log_params({"alpha": params.alpha, "l1_ratio": params.l1_ratio})
            metrics = wine.evaluate(model, x_test, y_test)
            for key, value in metrics.items():
                mlflow.log_metric(key, value)
            mlflow.log_figure(
                wine.residuals_figure(y_test, model.predict(x_test)), "predicted_vs_actual.png"
            )
            info = mlflow.sklearn.log_model(model, name="model", input_example=x_train.head(3))
            version = mlflow.register_model(info.model_uri, "bench-reference")
            client = mlflow.MlflowClient()
            for key, value in metrics.items():
                client.set_model_version_tag("bench-reference", version.version, key, str(value))
            client.set_registered_model_alias("bench-reference", "challenger", version.version)

    tracking.configure_tracking(settings)
    return {
        "bare": _median_seconds(bare, repeats),
        "ours": _median_seconds(ours, repeats),
        "reference": _median_seconds(reference, repeats),
    }


WORKER = """
import sys, time, mlflow
from mlflow.entities import Metric
mode, points = sys.argv[1], int(sys.argv[2])
client = mlflow.MlflowClient()
run = client.create_run(client.get_experiment_by_name("bench-load").experiment_id)
now = int(time.time() * 1000)
start = time.perf_counter()
if mode == "batch":
    metrics = [Metric("m", float(i), now, i) for i in range(points)]
    for i in range(0, points, 1000):
        client.log_batch(run.info.run_id, metrics=metrics[i:i + 1000])
else:
    for i in range(points):
        client.log_metric(run.info.run_id, "m", float(i), now, i)
print(time.perf_counter() - start)
"""


def bench_load(uri: str, clients: int, mode: str, points: int) -> float:
    """Metric points per second, all clients together (wall clock of the slowest)."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    if client.get_experiment_by_name("bench-load") is None:
        client.create_experiment("bench-load")
    env = {"MLFLOW_TRACKING_URI": uri, "PATH": "/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, mode, str(points)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    seconds = [float(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a load client failed")
    return clients * points / max(seconds)


def main(argv: list[str] | None = None) -> int:
    """Run every row and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", help="use this server instead of starting a native stack")
    p.add_argument("--data", default=str(SHARED_WINE), help="wine CSV (path or URL)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    stack = None
    uri = args.tracking_uri
    if uri is None:
        from mlstack.stack import NativeStack, StackConfig, find_free_ports

        state = Path(tempfile.mkdtemp(prefix="mlstack-bench-"))
        state.chmod(0o755)
        stack = NativeStack(StackConfig(state_dir=state, **find_free_ports()))
        print(f"starting a native stack in {state} ...", flush=True)
        stack.up(echo=lambda line: print("  " + line, flush=True))
        uri = stack.config.tracking_uri
    try:
        settings = Settings(_env_file=None, tracking_uri=uri)
        print("timing wine runs ...", flush=True)
        wine_s = bench_wine(settings, args.data, args.repeats)
        print("timing metric logging ...", flush=True)
        batch_1 = bench_load(uri, 1, "batch", POINTS)
        batch_8 = bench_load(uri, 8, "batch", POINTS)
        single_1 = bench_load(uri, 1, "single", 500)
    finally:
        if stack is not None:
            stack.down(purge=True)

    ours_overhead = wine_s["ours"] - wine_s["bare"]
    ref_overhead = wine_s["reference"] - wine_s["bare"]
    rows = [
        (
            "wine run: logging overhead (s)",
            ours_overhead,
            ref_overhead,
            ref_overhead / ours_overhead,
        ),
        (
            "wine run: total wall (s)",
            wine_s["ours"],
            wine_s["reference"],
            wine_s["reference"] / wine_s["ours"],
        ),
        ("metric points/s, 1 client", batch_1, single_1, batch_1 / single_1),
        ("metric points/s, 8 clients", batch_8, single_1, batch_8 / single_1),
    ]
    print(
        f"\nserver {uri}; bare fit+evaluate {wine_s['bare'] * 1000:.0f} ms; "
        f"median of {args.repeats} after {WARMUP} warm-up runs"
    )
    print(f"{'measure':34} {'ours':>10} {'reference':>10} {'ratio':>7}")
    for name, ours, ref, ratio in rows:
        print(f"{name:34} {ours:10.2f} {ref:10.2f} {ratio:6.1f}x")
    print("reference: MLflow-example style logging (requirement inference, per-call metrics/tags)")
    print("ratio: how many times better ours is (time: reference/ours; throughput: ours/reference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
