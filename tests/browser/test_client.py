"""The web client in a real browser, against our real model server: the wine form predicts what
/invocations answers for the same row; a CSV comes back with predictions; "Update model" after
the alias moved shows the old and new version; the digits grid is read; a stopped server is a
message in the page, never a traceback."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pandas as pd
import pytest
import requests

from mlstack import digits, wine
from mlstack.data import WINE_FEATURES
from mlstack.settings import Settings
from tests.browser.conftest import serve, start_client
from tests.helpers import make_wine_frame, write_uci_csv


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Settings:
    """An embedded store with wine v1 champion and digits v1 champion."""
    root = tmp_path_factory.mktemp("client")
    csv = write_uci_csv(make_wine_frame(800, seed=4), root / "wine.csv")
    settings = Settings(_env_file=None, tracking_uri=None, store_dir=root / "store",
                        wine_data=str(csv))  # fmt: skip
    wine.train(wine.WineParams(alpha=0.5), register_as="wine", settings=settings)
    digits.train(digits.DigitsParams(epochs=3), register_as="digits", settings=settings, verbose=0)
    return settings


@pytest.fixture(scope="module")
def env(store: Settings) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLSTACK_"))}
    return clean | {"MLFLOW_TRACKING_URI": "", "MLSTACK_STORE_DIR": str(store.store_dir),
                    "MLSTACK_WINE_DATA": store.wine_data, "TF_CPP_MIN_LOG_LEVEL": "3"}  # fmt: skip


@pytest.fixture(scope="module")
def wine_server(env) -> Iterator[str]:
    with serve(env, "models:/wine@champion") as url:
        yield url


@pytest.fixture(scope="module")
def client(env, wine_server) -> Iterator[str]:
    with start_client(env, wine_server) as url:
        yield url


def _open(page, url: str) -> None:
    page.goto(url)
    page.get_by_text(re.compile(r"Serving \w+ version \d+")).wait_for()


def test_the_wine_form_predicts_what_invocations_answers(page, client, wine_server) -> None:
    _open(page, client)
    columns = requests.get(f"{wine_server}/schema", timeout=10).json()["columns"]
    row = {c["name"]: round((c["low"] + c["high"]) / 2, 4) for c in columns}
    for name, value in row.items():
        box = page.get_by_label(name, exact=True)
        box.fill(str(value))
        box.press("Tab")
    page.get_by_role("button", name="Predict").click()
    shown = page.get_by_test_id("stMetricValue").first
    shown.wait_for()
    body = {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}}
    answer = requests.post(f"{wine_server}/invocations", json=body, timeout=10).json()
    assert shown.inner_text() == f"{answer['predictions'][0]:.2f}"
    page.get_by_text(re.compile(r"answered by wine version 1 · request [0-9a-f]{32}")).wait_for()


def test_a_csv_comes_back_with_a_prediction_per_row(page, client, wine_server, tmp_path) -> None:
    _open(page, client)
    frame = make_wine_frame(25, seed=9)[list(WINE_FEATURES)]
    csv = tmp_path / "batch.csv"
    frame.to_csv(csv, sep=";", index=False)
    page.locator("input[type=file]").first.set_input_files(str(csv))
    with page.expect_download() as download:
        page.get_by_role("button", name="Download predictions").click()
    result = pd.read_csv(download.value.path())
    assert len(result) == 25 and "predicted quality" in result
    body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
    expected = requests.post(f"{wine_server}/invocations", json=body, timeout=10).json()
    assert result["predicted quality"].tolist() == pytest.approx(
        [round(p, 4) for p in expected["predictions"]], abs=1e-4
    )


def test_a_csv_without_every_column_is_a_message(page, client, tmp_path) -> None:
    _open(page, client)
    csv = tmp_path / "short.csv"
    make_wine_frame(3)[["alcohol", "pH"]].to_csv(csv, index=False)
    page.locator("input[type=file]").first.set_input_files(str(csv))
    page.get_by_text("The CSV lacks 9 column(s)").wait_for()


def test_update_model_shows_the_old_and_new_version(page, env, store) -> None:
    with serve(env, "models:/wine@champion") as server, start_client(env, server) as url:
        _open(page, url)
        # A better model (a lighter penalty) becomes champion: the alias moves to v2.
        wine.train(wine.WineParams(alpha=0.01), register_as="wine", settings=store)
        page.get_by_role("tab", name="Model").click()
        page.get_by_role("button", name="Update model").click()
        page.get_by_text("Updated: version 1 → 2").wait_for()
        assert requests.get(f"{server}/version", timeout=10).json()["version"] == "2"


def test_the_digits_grid_is_read(page, env) -> None:
    with serve(env, "models:/digits@champion") as server, start_client(env, server) as url:
        _open(page, url)
        page.get_by_role("tab", name="Digits").click()
        for row in range(1, 7):  # a vertical stroke: a "1"
            cell = page.locator(f".st-key-cell-{row}-4 button")
            cell.click()
            page.locator(f".st-key-cell-{row}-4 button", has_text="■").wait_for()
        page.get_by_role("button", name="Read digit").click()
        page.get_by_text("The model reads").wait_for()
        page.get_by_test_id("stVegaLiteChart").wait_for()  # the ten probabilities, drawn


def test_a_stopped_server_is_a_message_not_a_traceback(page, env) -> None:
    server_running = serve(env, "models:/wine@champion")
    server = server_running.__enter__()
    with start_client(env, server) as url:
        try:
            _open(page, url)
        finally:
            server_running.__exit__(None, None, None)  # the server stops; the page stays open
        page.get_by_role("button", name="Predict").click()
        page.get_by_text(f"No model server answers at {server}").first.wait_for()
        assert "Traceback" not in page.content()
