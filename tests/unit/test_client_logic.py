"""The web client's logic, without a browser: form checks, CSV batches, pictures of digits
made into what the model learnt on, and the HTTP client's messages when the server is down, is
not ours, or refuses a request."""

from __future__ import annotations

import http.server
import io
import threading

import numpy as np
import pytest

from mlstack.client import inputs
from mlstack.client.api import ClientError, ServerClient
from mlstack.data import WINE_FEATURES
from mlstack.stack import free_port
from tests.helpers import make_wine_frame

FEATURES = [inputs.Feature(name, 0.0, 1.0, 2.0) for name in WINE_FEATURES]


def test_a_row_outside_the_training_range_is_named() -> None:
    row = dict.fromkeys(WINE_FEATURES, 1.0) | {"alcohol": 9.0, "pH": float("nan")}
    assert inputs.check_row(row, FEATURES) == [
        "pH: give a number",
        "alcohol: 9 is outside the training data's range [0, 2] (its central 99%)",
    ]
    assert inputs.check_row(dict.fromkeys(WINE_FEATURES, 1.0), FEATURES) == []
    assert inputs.Feature("x", 0.0, None, 4.0).default == 2.0


@pytest.mark.parametrize("sep", [";", ","])
def test_csv_batches_read_either_separator(sep: str) -> None:
    frame = make_wine_frame(2500)
    table = inputs.read_csv(frame.to_csv(sep=sep, index=False).encode(), FEATURES)
    assert list(table.columns) == list(WINE_FEATURES) and len(table) == 2500
    bodies = inputs.batches(table)
    assert [len(b["dataframe_split"]["data"]) for b in bodies] == [1000, 1000, 500]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The CSV is empty."),
        (b"alcohol,pH\n1,2\n", "The CSV lacks 9 column(s): fixed acidity, volatile acidity"),
        (b"a;b\n", "lacks 11 column(s)"),
    ],
)
def test_a_csv_that_cannot_be_sent_says_why(content: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        inputs.read_csv(content, FEATURES)


def test_text_in_a_number_column_is_refused() -> None:
    frame = make_wine_frame(3).astype({"alcohol": object})
    frame.loc[1, "alcohol"] = "strong"
    with pytest.raises(ValueError, match="alcohol hold values that are not numbers"):
        inputs.read_csv(frame.to_csv(index=False).encode(), FEATURES)


def test_a_picture_becomes_an_8x8_image_like_the_training_digits() -> None:
    from PIL import Image, ImageDraw

    picture = Image.new("L", (200, 300), color=255)  # white paper ...
    ImageDraw.Draw(picture).rectangle((90, 40, 110, 260), fill=0)  # ... a dark "1", off-centre
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    image = inputs.image_from_upload(buffer.getvalue())
    assert image.shape == (8, 8) and 0.0 <= image.min() and image.max() <= 1.0
    # Bright ink on black, centred: the middle columns carry it, the edges do not.
    assert image[1:7, 3:5].mean() > 0.5 and image[:, 0].max() < 0.1 and image[:, 7].max() < 0.1
    with pytest.raises(ValueError, match="not an image"):
        inputs.image_from_upload(b"not a picture")
    payload = inputs.digits_payload(image)
    assert np.asarray(payload["inputs"]).shape == (1, 8, 8, 1)


def test_server_down_and_a_bad_url_are_messages() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ClientError, match=rf"No model server answers at http://127.0.0.1:{port} "):
        ServerClient(f"http://127.0.0.1:{port}").version()
    with pytest.raises(ClientError, match="is not a server URL"):
        ServerClient("localhost:8080").version()


@pytest.fixture
def not_ours() -> str:
    """A web server that is not a model server: 404 for everything, a 400 JSON for POSTs."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def do_POST(self) -> None:
            body = b'{"error_code": "BAD_REQUEST", "message": "columns are missing"}'
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_server_that_is_not_ours_and_a_refusal_are_messages(not_ours: str) -> None:
    client = ServerClient(not_ours)
    with pytest.raises(ClientError, match="answers, but is not an mlstack model server"):
        client.version()
    with pytest.raises(ClientError, match=r"refused the prediction \(400\): columns are missing"):
        client.predict({"dataframe_split": {}})
