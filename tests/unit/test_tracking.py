"""Tracking setup holds no hidden state: each settings object configured takes effect (MLflow's
environment-only options included), clients name their own store, and the process-wide URIs
change only through configure_tracking."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import pytest

from mlstack.errors import UsageError
from mlstack.settings import Settings
from mlstack.tracking import (
    PROXIED_ARTIFACTS_ONLY,
    check_server,
    configure_tracking,
    tracking_client,
    tracking_uri,
)

MLFLOW_OPTIONS = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT",
    *PROXIED_ARTIFACTS_ONLY,
)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """A tracking server as far as the health check goes: GET /health answers 200."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def mlflow_state(monkeypatch) -> Iterator[None]:
    """Leave MLflow's options and process-wide URIs as they were."""
    for name in MLFLOW_OPTIONS:
        monkeypatch.setenv(name, "")  # recorded, so what the test writes is undone
        monkeypatch.delenv(name)
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


def _server_settings(uri: str, **kw: object) -> Settings:
    return Settings(_env_file=None, tracking_uri=uri, **kw)


@pytest.mark.usefixtures("mlflow_state")
def test_each_settings_object_configured_takes_effect(server: str) -> None:
    # With the old setdefault the first object's retries stayed for the process's life.
    tracking_uri(_server_settings(server, server_retries=1))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    configure_tracking(_server_settings(server, server_retries=5))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
    assert all(os.environ[name] == "false" for name in PROXIED_ARTIFACTS_ONLY)
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"


@pytest.mark.usefixtures("mlflow_state")
def test_a_retry_count_the_user_exported_for_mlflow_still_wins(server: str, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    monkeypatch.setenv("MLSTACK_SERVER_RETRIES", "2")
    settings = _server_settings(server)
    assert settings.server_retries == 9
    tracking_uri(settings)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    assert _server_settings(server).server_retries == 2


@pytest.mark.usefixtures("mlflow_state")
def test_clients_name_their_own_store_and_leave_the_global_uris(tmp_path: Path) -> None:
    first, second = (
        Settings(_env_file=None, tracking_uri=None, store_dir=tmp_path / name)
        for name in ("first", "second")
    )
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    one, two = tracking_client(first), tracking_client(second)
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    assert (one.tracking_uri, two.tracking_uri) == (
        first.embedded_tracking_uri,
        second.embedded_tracking_uri,
    )
    one.create_experiment("only-in-first")
    one.create_registered_model("only-in-first")  # the registry too, not the global one
    assert two.get_experiment_by_name("only-in-first") is None
    assert two.search_registered_models() == []
    assert [m.name for m in tracking_client(first).search_registered_models()] == ["only-in-first"]
    # configure_tracking twice: the process-wide URIs follow the last one.
    configure_tracking(first)
    assert mlflow.get_tracking_uri() == first.embedded_tracking_uri
    configure_tracking(second)
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == second.embedded_tracking_uri


def test_a_server_that_does_not_answer_is_one_line_naming_it_and_the_fix() -> None:
    from mlstack.stack import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UsageError, match=r"tracking server .* not reachable .*make stack-up"):
        check_server(url, timeout_s=2)
    with pytest.raises(UsageError, match=rf"^Prefect server {url} is not reachable .*; go$"):
        check_server(url, timeout_s=2, what="Prefect server", fix="go")
