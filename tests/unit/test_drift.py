"""What monitoring is made of, without a model or a store: the documented shifts, the image
statistics, reading every request form back from the log, and the drift call on clean and
shifted tables (through Evidently)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlstack.data import WINE_FEATURES, load_digits_data
from mlstack.monitor.drift import compare
from mlstack.monitor.profiles import PROFILES, image_features, rows_from_log
from mlstack.monitor.shifts import WARM_REGION_SHIFT, new_handwriting, warm_region
from tests.helpers import make_wine_frame, scoring_requests

WINE = PROFILES["wine"]
DIGITS = PROFILES["digits"]


def test_warm_region_moves_exactly_the_documented_columns() -> None:
    frame = make_wine_frame(200)
    shifted = warm_region(frame)
    moved = {c for c in frame.columns if not np.allclose(frame[c], shifted[c])}
    assert moved == set(WARM_REGION_SHIFT) | {"quality"}
    assert np.allclose(shifted["alcohol"] - frame["alcohol"], 1.2)
    assert (shifted["quality"] == (frame["quality"] - 1).clip(lower=3)).all()
    assert (shifted[["citric acid", "volatile acidity"]] >= 0).all().all()
    assert warm_region(frame).equals(shifted)  # deterministic


def test_new_handwriting_is_deterministic_and_stays_an_image() -> None:
    images = load_digits_data(None, test_size=0.2, seed=42).x_test[:50]
    redrawn = new_handwriting(images, seed=3)
    assert redrawn.shape == images.shape and redrawn.dtype == np.float32
    assert redrawn.min() >= 0 and redrawn.max() <= 1
    np.testing.assert_array_equal(redrawn, new_handwriting(images, seed=3))
    assert not np.array_equal(redrawn, new_handwriting(images, seed=4))
    # Thicker strokes on grey paper: more ink everywhere, and a brighter background.
    assert image_features(redrawn)["ink_mean"].mean() > image_features(images)["ink_mean"].mean()


def test_image_features_locate_the_ink() -> None:
    image = np.zeros((1, 8, 8))
    image[0, 0:2, 6:8] = 1.0  # a blob in the top-right corner
    features = image_features(image).iloc[0]
    assert features["center_row"] == pytest.approx(0.5 / 7)
    assert features["center_col"] == pytest.approx(6.5 / 7)
    assert features["region_03"] == 1.0 and features["region_00"] == 0.0
    assert features["ink_share"] == pytest.approx(4 / 64)
    big = image_features(np.zeros((2, 28, 28, 1)))  # MNIST-sized images work too
    assert list(big.columns) == list(image_features(image).columns) and len(big) == 2


def _log(bodies: list[tuple[str, str]], predictions: list[list]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(len(bodies))],
            "timestamp": np.arange(len(bodies), dtype=float),
            "model_name": "wine",
            "model_version": "1",
            "content_type": [ct for ct, _ in bodies],
            "request": [body for _, body in bodies],
            "response": [json.dumps({"predictions": p}) for p in predictions],
        }
    )


def test_every_request_form_reads_back_to_the_same_rows() -> None:
    frame = make_wine_frame(3)[list(WINE_FEATURES)]
    forms = [json.dumps(body) for body in scoring_requests(frame).values()]
    bodies = [("application/json", body) for body in forms]
    bodies.append(("text/csv", frame.to_csv(index=False)))
    bodies.append(("application/json", "{not json"))  # logged, but unreadable: skipped
    parsed = rows_from_log(_log(bodies, [[5.0, 6.0, 7.0]] * len(bodies)), WINE)
    assert parsed.skipped == 1
    rows = parsed.rows
    assert len(rows) == 3 * 4 and list(rows["row"][:3]) == [0, 1, 2]
    for request_id, group in rows.groupby("request_id"):
        np.testing.assert_allclose(group[list(WINE_FEATURES)].to_numpy(), frame.to_numpy())
        assert list(group["prediction"]) == [5.0, 6.0, 7.0], request_id


def test_a_profile_bug_stops_the_check_instead_of_counting_as_unreadable() -> None:
    class Broken(type(WINE)):  # a bug in reading back, not a body the profile refuses
        def matrix(self, body: str, content_type: str) -> np.ndarray:
            raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        rows_from_log(_log([("application/json", "{}")], [[5.0]]), Broken())


def test_the_window_counts_the_unreadable_requests_in_its_span_only() -> None:
    from mlstack.monitor.window import select

    frame = make_wine_frame(1)[list(WINE_FEATURES)]
    good = ("application/json", json.dumps(scoring_requests(frame)["dataframe_split"]))
    parquet = ("application/vnd.apache.parquet", "PAR1\ufffd\ufffd")  # logged as text
    # Times 0..7: unreadable at 1 (before the window of the last 4) and at 6 (inside it).
    bodies = [good, parquet, good, good, good, good, parquet, good]
    log = _log(bodies, [[5.0]] * len(bodies))
    window = select(log, "1", WINE, last=4, min_rows=1)
    assert list(window.rows["timestamp"]) == [3.0, 4.0, 5.0, 7.0] and window.skipped == 1
    assert select(log, "1", WINE, since=0.0, min_rows=1).skipped == 2  # the whole span


def _wine_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[list(WINE_FEATURES)].copy()
    rows["prediction"] = 0.3 * frame["alcohol"] - 1.5 * frame["volatile acidity"] + 2.5
    return rows


@pytest.mark.slow  # Evidently takes seconds to import
def test_clean_wine_does_not_drift_and_shifted_wine_does() -> None:
    data = make_wine_frame(2400, seed=1)
    reference = _wine_table(data.iloc[:800])
    clean = compare(reference, _wine_table(data.iloc[800:1400]), WINE)
    shifted = compare(reference, _wine_table(warm_region(data.iloc[1400:2000])), WINE)
    assert not clean.drift and clean.share < WINE.drift_share
    assert shifted.drift and shifted.columns["alcohol"].drifted
    assert shifted.worst(1)[0].score > clean.worst(1)[0].score
    assert set(shifted.columns) == set(WINE.columns)


@pytest.mark.slow
def test_new_handwriting_drifts_on_the_images_not_only_the_labels() -> None:
    held_out = load_digits_data(None, test_size=0.2, seed=42).x_test
    rng = np.random.default_rng(0)
    fixed = rng.dirichlet(np.ones(10), size=len(held_out))  # the same answers either way
    reference = DIGITS.rows(held_out, list(fixed))
    clean = DIGITS.rows(held_out[rng.permutation(len(held_out))], list(fixed))
    shifted = DIGITS.rows(new_handwriting(held_out, seed=1), list(fixed))
    assert not compare(reference, clean, DIGITS).drift
    result = compare(reference, shifted, DIGITS)
    assert result.drift  # with identical predictions, the images alone carry the drift
    assert not result.columns["predicted_class"].drifted
