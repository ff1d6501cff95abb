"""`python -m mlstack.serving` as a real process on an embedded store: the README's command,
with one worker and with several, hot reload under load with no failed or mixed answers,
following an alias, the prediction log, worker restarts, and bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from mlstack import wine
from mlstack.data import WINE_FEATURES, read_wine_csv
from mlstack.logstore import load_prediction_log
from mlstack.registry import load_pyfunc
from mlstack.settings import Settings
from mlstack.stack import free_port
from mlstack.tracking import tracking_client
from tests.helpers import PROJ_ROOT, http_server, wait_for

pytestmark = pytest.mark.slow


def serving(cli_env: dict[str, str], *args: str):
    """Our server on a free port (a context manager yielding its base URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.serving", "--port", str(port), *args]
    return http_server(cmd, cli_env, port, "python -m mlstack.serving")


def _register(settings: Settings, alpha: float) -> None:
    wine.train(wine.WineParams(alpha=alpha), register_as="wine", settings=settings)


WORKERS = pytest.mark.parametrize("workers", ["1", "2"], ids=["1-worker", "2-workers"])


@WORKERS
def test_reload_under_load_answers_every_request_from_one_version(
    settings, cli_env, workers
) -> None:
    _register(settings, alpha=0.5)
    frame = read_wine_csv(Path(settings.wine_data))[list(WINE_FEATURES)].head(2)
    body = {"dataframe_records": frame.to_dict(orient="records")}
    v1 = list(load_pyfunc("models:/wine/1", tracking_client(settings)).predict(frame))
    # (when the request was sent, status, predictions): the order answers are appended in is
    # not the order they were served (a client thread may wait for the GIL), the send time is.
    answers: list[tuple[float, int, list[float] | None]] = []
    stop = threading.Event()

    def client(url: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                sent = time.monotonic()
                r = session.post(f"{url}/invocations", json=body, timeout=30)
                answers.append((sent, r.status_code, r.json().get("predictions")))

    def sent_after(moment: float) -> list[list[float] | None]:
        return [p for sent, _, p in list(answers) if sent > moment]

    with serving(cli_env, "--model-uri", "models:/wine@champion", "--workers", workers) as url:
        threads = [threading.Thread(target=client, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(answers) > 50, 60, "load before the reload")
            _register(settings, alpha=0.01)  # better: the champion alias moves to v2
            asked = time.monotonic()
            reloaded = requests.post(f"{url}/reload", timeout=120)
            switched = time.monotonic()
            assert reloaded.status_code == 200 and reloaded.json()["serving"]["version"] == "2"
            wait_for(lambda: len(sent_after(switched)) > 50, 60, "load after the reload")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    v2 = list(load_pyfunc("models:/wine/2", tracking_client(settings)).predict(frame))
    assert v1 != v2
    assert {status for _, status, _ in answers} == {200}
    assert all(p in (v1, v2) for _, _, p in answers)  # never a mix of two versions
    assert v1 in [p for sent, _, p in answers if sent < asked]
    # Every request sent once /reload has answered meets the new version on every worker.
    assert all(p == v2 for p in sent_after(switched))


@WORKERS
def test_follow_alias_reloads_by_itself(settings, cli_env, workers) -> None:
    _register(settings, alpha=0.5)
    args = ["--model-uri", "models:/wine@champion", "--follow-alias", "0.5", "--workers", workers]
    with serving(cli_env, *args) as url:
        assert requests.get(f"{url}/version", timeout=5).json()["version"] == "1"
        _register(settings, alpha=0.01)
        wait_for(
            lambda: requests.get(f"{url}/metrics", timeout=5).text.count('outcome="ok"} 1') == 1,
            60,
            "the server to follow the alias to v2",
        )
        # Each new connection may reach another worker: all of them serve v2 now.
        versions = {requests.get(f"{url}/version", timeout=5).json()["version"] for _ in range(20)}
        assert versions == {"2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-uri", "models:/nope@champion"], "cannot load models:/nope@champion"),
        (["--model-uri", "models:/wine/1", "--follow-alias", "5"], "--follow-alias needs"),
        (["--model-uri", "models:/wine/1", "--port", "70000"], "is not a TCP port"),
        (["--model-uri", "models:/nope@champion", "--workers", "2"], "cannot load models:/nope"),
        (["--model-uri", "models:/wine/1", "--workers", "0"], "--workers 0: give 1 or more"),
    ],
    ids=["unknown-model", "follow-without-alias", "bad-port", "unknown-model-2", "no-workers"],
)
def test_bad_input_exits_2_with_one_line(settings, cli_env, args, message) -> None:
    _register(settings, alpha=0.5)
    proc = subprocess.run(
        [sys.executable, "-m", "mlstack.serving", *args],
        cwd=PROJ_ROOT, env=cli_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-1500:]
    last = proc.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith("python -m mlstack.serving: error:")


@pytest.mark.parametrize(
    ("workers", "sink"),
    [("1", "directory"), ("2", "directory"), ("1", "mlflow"), ("2", "mlflow")],
    ids=["1-worker-dir", "2-workers-dir", "1-worker-mlflow-run", "2-workers-mlflow-run"],
)
def test_every_answered_request_is_logged_exactly_once(
    settings, cli_env, tmp_path, workers, sink
) -> None:
    _register(settings, alpha=0.5)
    frame = read_wine_csv(Path(settings.wine_data))[list(WINE_FEATURES)].head(3)
    bodies = [
        ("application/json", json.dumps({"dataframe_records": frame.to_dict("records")})),
        ("text/csv", frame.to_csv(index=False)),  # MLflow's path
        ("application/json", "{not json"),  # a 400: answered, but not a prediction
    ]
    answered: list[tuple[int, str]] = []
    logdir = tmp_path / "predictions"
    dest = str(logdir) if sink == "directory" else "mlflow"
    args = ["--model-uri", "models:/wine@champion", "--log-predictions", dest,
            "--log-batch", "50", "--log-flush-s", "60", "--workers", workers]  # fmt: skip

    def client(url: str, n: int) -> None:
        with requests.Session() as session:
            for i in range(n):
                content_type, body = bodies[i % len(bodies)]
                r = session.post(
                    f"{url}/invocations", data=body, headers={"Content-Type": content_type}
                )
                answered.append((r.status_code, r.headers["X-Request-Id"]))

    with serving(cli_env, *args) as url:
        threads = [threading.Thread(target=client, args=(url, 60)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    # The server has stopped (SIGTERM): what was still queued (under a batch, long before the
    # 60 s flush) must be written now, and no temporary file left behind.
    if sink == "directory":
        files = sorted(logdir.iterdir())
        assert files and all(f.suffix == ".parquet" and not f.name.startswith(".") for f in files)
        table = load_prediction_log(logdir)
    else:  # one run in <model>-predictions, ended FINISHED, the batches its artifacts
        client = tracking_client(settings)
        (run,) = client.search_runs(
            [client.get_experiment_by_name("wine-predictions").experiment_id]
        )
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlstack.kind"] == "prediction-log"
        table = load_prediction_log(run.info.run_id, settings.embedded_tracking_uri)
    ok_ids = sorted(rid for status, rid in answered if status == 200)
    assert len(ok_ids) == 160 and {s for s, _ in answered} == {200, 400}
    assert sorted(table["request_id"]) == ok_ids  # each answered prediction exactly once
    assert set(table["model_version"]) == {"1"} and set(table["rows"]) == {3}
    assert set(table["content_type"]) == {"application/json", "text/csv"}


@WORKERS
def test_a_version_that_cannot_load_leaves_every_worker_on_the_old_one(
    settings, cli_env, workers
) -> None:
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    _register(settings, alpha=0.5)
    with serving(cli_env, "--model-uri", "models:/wine@champion", "--workers", workers) as url:
        wait_for(lambda: len(_pids(url)) == int(workers), 120, "every worker to answer")
        _register(settings, alpha=0.01)  # the champion moves to v2 ...
        assert requests.get(f"{url}/version", timeout=5).json()["version"] == "1"  # no reload yet
        location = tracking_client(settings).get_model_version_download_uri("wine", "2")
        (Path(url2pathname(urlparse(location).path)) / "MLmodel").unlink()  # ... which is broken
        reloaded = requests.post(f"{url}/reload", timeout=120)
        assert reloaded.status_code == 500 and reloaded.json()["reloaded"] is False
        assert "MLmodel" in reloaded.json()["error"]  # says why
        assert reloaded.json()["serving"]["version"] == "1"
        versions = {requests.get(f"{url}/version", timeout=5).json()["version"] for _ in range(20)}
        assert versions == {"1"}  # no worker switched: all or none
        text = requests.get(f"{url}/metrics", timeout=10).text
        assert _metric(text, 'mlstack_reloads_total{outcome="failed"}') == 1


def test_a_port_in_use_exits_2_with_one_line(settings, cli_env) -> None:
    _register(settings, alpha=0.5)
    with serving(cli_env, "--model-uri", "models:/wine@champion", "--workers", "2") as url:
        port = url.rsplit(":", 1)[1]  # taken, by a server sharing it between its own workers
        for workers in ("1", "2"):
            proc = subprocess.run(
                [sys.executable, "-m", "mlstack.serving", "--model-uri", "models:/wine/1",
                 "--port", port, "--workers", workers],
                cwd=PROJ_ROOT, env=cli_env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert proc.returncode == 2, proc.stderr[-1500:]
            assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr.strip().splitlines()[-1]


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match[1])


def test_workers_share_the_load_merge_metrics_and_restart(settings, cli_env) -> None:
    _register(settings, alpha=0.5)
    frame = read_wine_csv(Path(settings.wine_data))[list(WINE_FEATURES)].head(1)
    body = {"dataframe_split": frame.to_dict(orient="split", index=False)}
    with serving(cli_env, "--model-uri", "models:/wine@champion", "--workers", "2") as url:
        # Each new connection goes to one worker's socket (SO_REUSEPORT spreads them); a
        # worker listens once its model is loaded, so the second may still be on its way.
        wait_for(lambda: len(_pids(url)) == 2, 120, "both workers to answer")
        pids = _pids(url)
        for _ in range(30):  # new connections: both workers answer some of these
            assert requests.post(f"{url}/invocations", json=body, timeout=10).status_code == 200
        text = requests.get(f"{url}/metrics", timeout=10).text
        assert _metric(text, 'mlstack_requests_total{path="/invocations",status="200"}') == 30
        assert _metric(text, "mlstack_invocation_seconds_count") == 30
        assert _metric(text, "mlstack_workers") == 2

        victim = pids.pop()
        os.kill(victim, signal.SIGKILL)

        wait_for(lambda: len(_pids(url) - {victim}) == 2, 120, "the killed worker to restart")
        assert requests.post(f"{url}/invocations", json=body, timeout=10).status_code == 200
        # The killed worker's counts stay in the sums (counters never go back).
        text = requests.get(f"{url}/metrics", timeout=10).text
        assert _metric(text, "mlstack_invocation_seconds_count") == 31
        assert _metric(text, "mlstack_workers") == 2
        everyone = pids | _pids(url)
    # The server stopped (SIGTERM to the supervisor): no worker outlives it.
    wait_for(lambda: not any(_alive(pid) for pid in everyone), 30, "the workers to exit")


def _pids(url: str) -> set[int]:
    """The worker pids that answer 20 new connections (one that fails while a worker
    restarts is left out)."""
    pids = set()
    for _ in range(20):
        try:
            pids.add(requests.get(f"{url}/health", timeout=5).json()["worker"]["pid"])
        except requests.RequestException:
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
