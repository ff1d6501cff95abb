"""The web client's page run headless by Streamlit's AppTest (no browser, no server): a server
that does not answer or a malformed URL is a message, never an exception; the digit grid
toggles cells and clears. The page against a real server is tests/browser."""

from __future__ import annotations

import numpy as np
import pytest

from mlstack.stack import free_port
from tests.helpers import PROJ_ROOT

APP = PROJ_ROOT / "mlstack" / "client" / "app.py"


@pytest.fixture
def app(monkeypatch):
    from streamlit.testing.v1 import AppTest

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLSTACK_CLIENT_SERVER_URL", url)
    page = AppTest.from_file(str(APP), default_timeout=30)
    page.run()
    return page, url


def test_a_server_that_does_not_answer_is_a_message(app) -> None:
    page, url = app
    assert not page.exception
    assert page.sidebar.error[0].value.startswith(f"No model server answers at {url}")
    assert [i.value for i in page.info][:2] == [
        "Connect to a model server (sidebar) to predict.",
        "Connect to a model server (sidebar) to see its model.",
    ]


def test_a_malformed_url_is_a_message(app) -> None:
    page, _ = app
    page.text_input(key="server_url").set_value("localhost:8080").run()
    assert not page.exception
    assert "'localhost:8080' is not a server URL" in page.sidebar.error[0].value


def test_the_digit_grid_toggles_and_clears(app) -> None:
    page, _ = app
    page.button(key="cell-2-3").click().run()
    assert page.session_state["digit"][2, 3] == 1.0
    page.button(key="cell-2-3").click().run()
    assert page.session_state["digit"][2, 3] == 0.0
    page.button(key="cell-5-5").click().run()
    page.button(key="digit:clear").click().run()
    assert not np.asarray(page.session_state["digit"]).any()
    page.button(key="digit:read").click().run()
    assert "Connect to a model server (sidebar) first." in [e.value for e in page.error]
