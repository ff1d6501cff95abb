"""Data loaders: wine schema checks, download/cache/retry against a local HTTP server, digits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from mlstack.data import (
    WINE_FEATURES,
    cache_path_for,
    csv_separator,
    fetch,
    load_digits_data,
    load_wine,
    read_wine_csv,
)
from mlstack.errors import UsageError
from mlstack.settings import Settings
from tests.helpers import make_wine_frame, write_uci_csv

# --- wine schema ---------------------------------------------------------------------------


def test_uci_format_loads_with_canonical_types(wine_csv: Path) -> None:
    frame = read_wine_csv(wine_csv)
    assert list(frame.columns) == [*WINE_FEATURES, "quality"]
    assert all(frame[c].dtype == "float64" for c in WINE_FEATURES)
    assert frame["quality"].dtype == "int64"
    assert len(frame) == 400


def test_comma_separated_export_loads_too(tmp_path: Path) -> None:
    path = tmp_path / "wine.csv"
    make_wine_frame(50).to_csv(path, index=False)
    assert len(read_wine_csv(path)) == 50


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = write_uci_csv(make_wine_frame(50).drop(columns=["pH", "alcohol"]), tmp_path / "w.csv")
    with pytest.raises(UsageError, match=r"lacks column\(s\) 'pH', 'alcohol'"):
        read_wine_csv(path)


def test_non_numeric_value_names_column_and_row(tmp_path: Path) -> None:
    frame = make_wine_frame(50).astype({"density": object})
    frame.loc[7, "density"] = "n/a"
    with pytest.raises(UsageError, match=r"column 'density'.*data row 8: 'n/a'"):
        read_wine_csv(write_uci_csv(frame, tmp_path / "w.csv"))


def test_fractional_quality_is_rejected(tmp_path: Path) -> None:
    frame = make_wine_frame(50).astype({"quality": float})
    frame.loc[3, "quality"] = 5.5
    with pytest.raises(UsageError, match="'quality' must hold integers"):
        read_wine_csv(write_uci_csv(frame, tmp_path / "w.csv"))


def test_too_few_rows_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has 5 rows; need at least 10"):
        read_wine_csv(write_uci_csv(make_wine_frame(5), tmp_path / "w.csv"))


def _uci_text(rows: int = 5) -> str:
    frame = make_wine_frame(rows)
    header = ";".join(f'"{c}"' for c in frame.columns)
    return header + "\n" + frame.to_csv(sep=";", index=False, header=False)


@pytest.mark.parametrize(
    ("text", "separator"),
    [
        (_uci_text(), ";"),  # the UCI file: quoted header, `;`
        (make_wine_frame(5).to_csv(index=False), ","),  # pandas' default export
        (make_wine_frame(5).to_csv(sep=";", index=False), ";"),  # unquoted `;`
        ("a;b\n1;2\n", ";"),
        ("a,b\n", ","),  # a header alone
        ("alcohol\n9.4\n", ","),  # one column: nothing to tell, the default
        ("", ","),
    ],
)
def test_csv_separator_reads_uci_and_common_exports(text: str, separator: str) -> None:
    assert csv_separator(text) == separator


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "cannot parse"),
        (b"\x00\xff\xfe binary \x00\x01", "cannot parse|lacks column"),
        (b"a;b\n1;2\n", "lacks column"),
    ],
)
def test_unreadable_files_fail_clearly(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=expected):
        read_wine_csv(path)


def test_missing_path_and_directory(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist; pass --data"):
        load_wine(str(tmp_path / "nope.csv"), settings)
    with pytest.raises(UsageError, match="is not a file"):
        load_wine(str(tmp_path), settings)


def test_default_source_comes_from_settings(settings: Settings) -> None:
    wine = load_wine(None, settings)
    assert wine.source == settings.wine_data
    assert len(wine.features.columns) == 11


# --- download, cache, retries (a real HTTP server on loopback) -------------------------------


class _Server:
    """Serves /wine.csv, /flaky.csv (503 on the first `fail_first` hits), /broken, /gone."""

    def __init__(self, body: bytes, fail_first: int) -> None:
        self.hits: dict[str, int] = {}
        self.body = body
        self.fail_first = fail_first

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                n = server.hits[self.path] = server.hits.get(self.path, 0) + 1
                if self.path == "/gone":
                    self.send_error(404)
                elif self.path == "/broken" or (
                    self.path == "/flaky.csv" and n <= server.fail_first
                ):
                    self.send_error(503)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(server.body)))
                    self.end_headers()
                    self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def http_server(wine_csv: Path) -> Iterator[tuple[str, _Server]]:
    state = _Server(wine_csv.read_bytes(), fail_first=2)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_is_cached_and_fetched_once(http_server, settings: Settings) -> None:
    base, state = http_server
    first = load_wine(f"{base}/wine.csv", settings)
    second = load_wine(f"{base}/wine.csv", settings)
    assert state.hits["/wine.csv"] == 1
    assert first.path == second.path == cache_path_for(f"{base}/wine.csv", settings.cache_dir)
    assert first.source == f"{base}/wine.csv"
    assert len(second.frame) == 400


def test_transient_errors_are_retried(http_server, settings: Settings) -> None:
    base, state = http_server
    path = fetch(f"{base}/flaky.csv", settings.model_copy(update={"download_retries": 3}))
    assert state.hits["/flaky.csv"] == 3
    assert path.read_bytes() == state.body


def test_client_errors_are_not_retried(http_server, settings: Settings) -> None:
    base, state = http_server
    with pytest.raises(UsageError, match="HTTP 404"):
        fetch(f"{base}/gone", settings)
    assert state.hits["/gone"] == 1


def test_persistent_failure_gives_up_and_leaves_no_partial_file(
    http_server, settings: Settings
) -> None:
    base, state = http_server
    with pytest.raises(UsageError, match=r"after 2 attempts \(HTTP 503\)"):
        fetch(f"{base}/broken", settings.model_copy(update={"download_retries": 2}))
    assert state.hits["/broken"] == 2
    assert not settings.cache_dir.exists() or not any(settings.cache_dir.iterdir())


def test_unreachable_host_fails_fast(settings: Settings) -> None:
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
    quick = settings.model_copy(update={"download_retries": 1})
    with pytest.raises(UsageError, match=r"x.csv after 1 attempts \(connection refused\); check"):
        fetch("http://127.0.0.1:9/x.csv", quick)


# --- digits ----------------------------------------------------------------------------------


def test_builtin_digits_are_scaled_and_split() -> None:
    data = load_digits_data(None, test_size=0.2, seed=42)
    assert data.image_shape == (8, 8, 1)
    assert len(data.x_test) == 360 and len(data.x_train) == 1437
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert set(np.unique(data.y_test)) == set(range(10))


def _mnist_like(path: Path, n_train: int = 60, n_test: int = 20) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test),
    )
    return path


def test_mnist_npz_loads_with_channel_axis(tmp_path: Path) -> None:
    data = load_digits_data(str(_mnist_like(tmp_path / "m.npz")), test_size=0.2, seed=0)
    assert data.x_train.shape == (60, 28, 28, 1) and data.x_test.shape == (20, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and data.x_train.max() <= 1.0


def test_npz_with_wrong_arrays_or_labels_fails_clearly(tmp_path: Path) -> None:
    np.savez(tmp_path / "keys.npz", images=np.zeros((20, 8, 8)))
    with pytest.raises(UsageError, match="expected x_train, y_train, x_test, y_test"):
        load_digits_data(str(tmp_path / "keys.npz"), test_size=0.2, seed=0)
    np.savez(tmp_path / "labels.npz", x=np.zeros((20, 8, 8)), y=np.full(20, 12))
    with pytest.raises(UsageError, match="integer labels 0-9"):
        load_digits_data(str(tmp_path / "labels.npz"), test_size=0.2, seed=0)
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(UsageError, match="cannot read digits data"):
        load_digits_data(str(tmp_path / "text.npz"), test_size=0.2, seed=0)
    with pytest.raises(UsageError, match="is not a file"):
        load_digits_data(str(tmp_path / "missing.npz"), test_size=0.2, seed=0)
