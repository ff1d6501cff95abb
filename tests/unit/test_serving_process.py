"""`python -m mlstack.serving` as a real process on an embedded store: the README's command,
hot reload under load with no failed or mixed answers, following an alias, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import pytest
import requests

from mlstack import wine
from mlstack.data import WINE_FEATURES, read_wine_csv
from mlstack.settings import Settings
from mlstack.stack import free_port
from tests.helpers import PROJ_ROOT, http_server, wait_for

pytestmark = pytest.mark.slow


def serving(cli_env: dict[str, str], *args: str):
    """Our server on a free port (a context manager yielding its base URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlstack.serving", "--port", str(port), *args]
    return http_server(cmd, cli_env, port, "python -m mlstack.serving")


def _register(settings: Settings, alpha: float) -> None:
    wine.train(wine.WineParams(alpha=alpha), register_as="wine", settings=settings)


def test_reload_under_load_answers_every_request_from_one_version(settings, cli_env) -> None:
    _register(settings, alpha=0.5)
    frame = read_wine_csv(Path(settings.wine_data))[list(WINE_FEATURES)].head(2)
    body = {"dataframe_records": frame.to_dict(orient="records")}
    v1 = list(mlflow.pyfunc.load_model("models:/wine/1").predict(frame))
    answers: list[tuple[int, list[float] | None]] = []
    stop = threading.Event()

    def client(url: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                r = session.post(f"{url}/invocations", json=body, timeout=30)
                answers.append((r.status_code, r.json().get("predictions")))

    with serving(cli_env, "--model-uri", "models:/wine@champion") as url:
        threads = [threading.Thread(target=client, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(answers) > 50, 60, "load before the reload")
            _register(settings, alpha=0.01)  # better: the champion alias moves to v2
            reloaded = requests.post(f"{url}/reload", timeout=120)
            assert reloaded.status_code == 200 and reloaded.json()["serving"]["version"] == "2"
            seen = len(answers)
            wait_for(lambda: len(answers) > seen + 50, 60, "load after the reload")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    v2 = list(mlflow.pyfunc.load_model("models:/wine/2").predict(frame))
    assert v1 != v2
    statuses = {status for status, _ in answers}
    assert statuses == {200}
    assert all(p in (v1, v2) for _, p in answers)  # never a mix of two versions
    assert answers[-1][1] == v2 and v1 in [p for _, p in answers]


def test_follow_alias_reloads_by_itself(settings, cli_env) -> None:
    _register(settings, alpha=0.5)
    with serving(cli_env, "--model-uri", "models:/wine@champion", "--follow-alias", "0.5") as url:
        assert requests.get(f"{url}/version", timeout=5).json()["version"] == "1"
        _register(settings, alpha=0.01)
        wait_for(
            lambda: requests.get(f"{url}/version", timeout=5).json()["version"] == "2",
            60,
            "the server to follow the alias to v2",
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-uri", "models:/nope@champion"], "cannot load models:/nope@champion"),
        (["--model-uri", "models:/wine/1", "--follow-alias", "5"], "--follow-alias needs"),
        (["--model-uri", "models:/wine/1", "--port", "70000"], "is not a TCP port"),
    ],
    ids=["unknown-model", "follow-without-alias", "bad-port"],
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


def test_every_answered_request_is_logged_exactly_once(settings, cli_env, tmp_path) -> None:
    import pyarrow.parquet as pq

    _register(settings, alpha=0.5)
    frame = read_wine_csv(Path(settings.wine_data))[list(WINE_FEATURES)].head(3)
    bodies = [
        ("application/json", json.dumps({"dataframe_records": frame.to_dict("records")})),
        ("text/csv", frame.to_csv(index=False)),  # MLflow's path
        ("application/json", "{not json"),  # a 400: answered, but not a prediction
    ]
    answered: list[tuple[int, str]] = []
    logdir = tmp_path / "predictions"
    args = ["--model-uri", "models:/wine@champion", "--log-predictions", str(logdir),
            "--log-batch", "50", "--log-flush-s", "60"]  # fmt: skip

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
    # 60 s flush) must be on disk now, and no temporary file left behind.
    files = sorted(logdir.iterdir())
    assert files and all(f.suffix == ".parquet" and not f.name.startswith(".") for f in files)
    table = pq.read_table(logdir).to_pandas()
    ok_ids = sorted(rid for status, rid in answered if status == 200)
    assert len(ok_ids) == 160 and {s for s, _ in answered} == {200, 400}
    assert sorted(table["request_id"]) == ok_ids  # each answered prediction exactly once
    assert set(table["model_version"]) == {"1"} and set(table["rows"]) == {3}
    assert set(table["content_type"]) == {"application/json", "text/csv"}
