"""Serving benchmark: our server against `mlflow models serve`, same model, machine and run.

    make bench-serving                       # about 9 minutes with the default 8 s per cell
    .venv/bin/python -m benchmarks.serving --seconds 10 --models digits
    .venv/bin/python -m benchmarks.serving --workers 2   # both servers with 2 workers

A throwaway embedded store gets a wine ElasticNet (the team's CSV when ../shared has it);
both servers load models:/wine@champion with the same number of workers (--workers, default
1). The load generator is wrk (`apt-get install wrk`: C, event-driven, not the bottleneck
here), for single-row and 100-row `dataframe_split` requests at 1, 8 and 64 connections.
Before timing, both servers must return identical predictions for both bodies. Goal: at 8
connections with single rows, >= 10x the requests/s of `mlflow models serve`,
p99 <= 10 ms, zero errors.

Digits: the CNN (train_digits.py with its defaults) behind ours with adaptive batching (the
default, --max-batch-ms 2), ours without (--max-batch-ms 0) and `mlflow models serve`, for
requests of 1 and of 32 held-out images (`inputs` tensors) at 1, 8 and 64 connections; the
answers must agree within float32 rounding first. Goal: at 8 connections with single images,
>= 20x `mlflow models serve` with p99 under 20 ms; 32-image requests at least as many
images/s as single ones.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

import requests

from mlstack.polling import poll_until
from mlstack.settings import PROJ_ROOT
from mlstack.stack import free_port

SHARED_WINE = PROJ_ROOT.parent / "shared" / "data" / "winequality-red.csv"
BIN = Path(sys.executable).parent
CONNECTIONS = (1, 8, 64)
ROWS = (1, 100)
IMAGES = (1, 32)
DIGITS_TOLERANCE = 1e-5
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@contextmanager
def _server(cmd: list[str], env: dict[str, str], url: str, name: str):
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def ping() -> str | None:
            try:
                code = requests.get(f"{url}/ping", timeout=2).status_code
            except requests.ConnectionError:
                return "connection refused"
            return None if code == 200 else f"HTTP {code}"

        problem = poll_until(ping, 180, interval_s=0.5, stop=lambda: proc.poll() is not None)
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"{name} exited: {log.read().decode()[-1000:]}")
        if problem is not None:
            raise SystemExit(f"{name} did not answer /ping within 180 s ({problem})")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _all_workers_up(url: str, workers: int) -> None:
    """Wait until our server reports every worker (each listens once its model is loaded)."""

    def all_up() -> str | None:
        text = requests.get(f"{url}/metrics", timeout=30).text
        up = re.search(rf"^mlstack_workers {workers}(\.0)?$", text, re.M)
        return None if up else "not every worker is up"

    if poll_until(all_up, 180, interval_s=0.5) is None:
        return
    raise SystemExit(f"our server did not report {workers} workers within 180 s")


def _body(rows: int, data: Path) -> str:
    from mlstack.data import WINE_FEATURES, read_wine_csv

    frame = read_wine_csv(data)[list(WINE_FEATURES)].head(rows)
    split = frame.to_dict(orient="split")
    del split["index"]
    return json.dumps({"dataframe_split": split})


def wrk(url: str, body: str, connections: int, seconds: int) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) and errors from one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body)}\n"
        )
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
             f"{url}/invocations"],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)

    def latency(pct: str) -> float:
        found = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if found is None:
            raise SystemExit(f"cannot read the {pct}% latency from wrk's output:\n{out}")
        return float(found[1]) * UNITS[found[2]]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non_2xx[1]) if non_2xx else 0
    errors += sum(map(int, sockets.groups())) if sockets else 0
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": errors,
    }


def _servers(up: ExitStack, env: dict[str, str], model: str, workers: int, ours: dict) -> dict:
    """Start each of `ours` (label -> extra args of our server) and `mlflow models serve` on
    `model`, `workers` workers each; label -> base URL."""
    urls = {}
    for label, extra in ours.items():
        port = free_port()
        urls[label] = up.enter_context(_server(
            [sys.executable, "-m", "mlstack.serving", "--model-uri", model, "--port", str(port),
             "--workers", str(workers), *extra],
            env, f"http://127.0.0.1:{port}", f"mlstack.serving {label}",
        ))  # fmt: skip
    port = free_port()
    urls["mlflow"] = up.enter_context(_server(
        [str(BIN / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env, f"http://127.0.0.1:{port}", "mlflow models serve",
    ))  # fmt: skip
    for label in ours:
        _all_workers_up(urls[label], workers)
    return urls


def _table(urls: dict, bodies: dict, unit: str, seconds: int, workers: int) -> None:
    """One wrk run per server, body and connection count; each of ours against MLflow's."""
    for url in urls.values():  # warm-up, not measured: every worker has started
        wrk(url, bodies[min(bodies)], 8, 3)
    ours = [label for label in urls if label != "mlflow"]
    print(f"\nwrk -t1, {seconds:g} s per cell, {workers} worker(s) each; latency in ms")
    cells = " | ".join(f"{label + ' rps':>14} {'p50':>6} {'p99':>6} {'err':>4}" for label in urls)
    ratios = " ".join(f"{label + '/mlflow':>14}" for label in ours)
    header = f"{unit:>6} {'conns':>5} | {cells} | {ratios}"
    print(header)
    print("-" * len(header))
    for size, body in bodies.items():
        for conns in CONNECTIONS:
            got = {label: wrk(url, body, conns, seconds) for label, url in urls.items()}
            row = " | ".join(
                f"{r['rps']:>14.0f} {r['p50']:>6.2f} {r['p99']:>6.2f} {r['errors']:>4}"
                for r in got.values()
            )
            mlflow_rps = max(got["mlflow"]["rps"], 1e-9)
            ratio = " ".join(f"{got[label]['rps'] / mlflow_rps:>13.1f}x" for label in ours)
            print(f"{size:>6} {conns:>5} | {row} | {ratio}", flush=True)


def wine_table(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Train and register wine; our server against MLflow's on 1- and 100-row requests."""
    print("training and registering wine ...", flush=True)
    subprocess.run(
        [sys.executable, "train.py", "--data", str(args.data), "--register-as", "wine"],
        cwd=PROJ_ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    with ExitStack() as up:
        urls = _servers(up, env, "models:/wine@champion", args.workers, {"ours": []})
        bodies = {rows: _body(rows, args.data) for rows in ROWS}
        for rows, body in bodies.items():
            answers = {
                name: requests.post(
                    f"{url}/invocations", data=body, timeout=30,
                    headers={"Content-Type": "application/json"},
                ).json()
                for name, url in urls.items()
            }  # fmt: skip
            same = answers["ours"] == answers["mlflow"]
            print(f"{rows}-row request: identical predictions from both servers: {same}")
            if not same:
                return 1
        print("\nwine ElasticNet (dataframe_split requests)")
        _table(urls, bodies, "rows", args.seconds, args.workers)
    return 0


def digits_table(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Train and register digits; ours with and without batching against MLflow's."""
    import numpy as np

    from mlstack.data import load_digits_data
    from mlstack.params import DigitsParams

    print("\ntraining and registering digits ...", flush=True)
    subprocess.run(
        [sys.executable, "train_digits.py", "--register-as", "digits"],
        cwd=PROJ_ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    split = DigitsParams()
    images = load_digits_data(None, test_size=split.test_size, seed=split.seed).x_test
    bodies = {n: json.dumps({"inputs": images[:n].tolist()}) for n in IMAGES}
    ours = {"batched": [], "unbatched": ["--max-batch-ms", "0"]}
    with ExitStack() as up:
        urls = _servers(up, env, "models:/digits@champion", args.workers, ours)
        for n, body in bodies.items():
            answers = {
                name: np.asarray(requests.post(
                    f"{url}/invocations", data=body, timeout=60,
                    headers={"Content-Type": "application/json"},
                ).json()["predictions"])
                for name, url in urls.items()
            }  # fmt: skip
            worst = max(float(np.max(np.abs(answers[o] - answers["mlflow"]))) for o in ours)
            print(f"{n}-image request: largest |ours - mlflow| {worst:.1e}")
            if worst > DIGITS_TOLERANCE:
                return 1
        print("\ndigits CNN (inputs tensors of 8x8x1 images; rps are requests/s)")
        _table(urls, bodies, "images", args.seconds, args.workers)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m benchmarks.serving`."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__)
    p.add_argument("--seconds", type=int, default=8, help="wrk duration per cell")
    p.add_argument("--data", type=Path, default=SHARED_WINE if SHARED_WINE.exists() else None)
    p.add_argument("--workers", type=int, default=1, help="worker processes, each server")
    p.add_argument("--models", default="wine,digits", help="which tables (default both)")
    args = p.parse_args(argv)
    models = args.models.split(",")
    if not shutil.which("wrk"):
        print("benchmarks.serving: error: wrk not found; install it: apt-get install wrk")
        return 2
    if "wine" in models and args.data is None:
        print("benchmarks.serving: error: no wine CSV; pass --data PATH")
        return 2

    with tempfile.TemporaryDirectory(prefix="mlstack-bench-serving-") as store:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLSTACK_"))}
        env |= {
            "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
            "MLSTACK_STORE_DIR": store,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # mlflow starts uvicorn by name
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        tables = {"wine": wine_table, "digits": digits_table}
        for name in models:
            if code := tables[name](args, env):
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
