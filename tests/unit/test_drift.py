"""What monitoring is made of, without a model or a store: the documented shifts, the image
statistics, reading every request form back from the log, the drift call on clean and
shifted tables, a retrained version's mixed reference, and Evidently's report beside it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlstack.data import WINE_FEATURES, load_digits_data
from mlstack.monitor.drift import as_dict, compare, parts
from mlstack.monitor.profiles import (
    PROFILES,
    SEGMENT,
    SEGMENT_LABELLED,
    SEGMENT_ORIGINAL,
    image_features,
    rows_from_log,
)
from mlstack.monitor.shifts import WARM_REGION_SHIFT, WINE_RELATED, new_handwriting, warm_region
from tests.helpers import make_wine_frame, run_entry, scoring_requests, write_uci_csv

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


def test_clean_wine_does_not_drift_and_shifted_wine_does() -> None:
    data = make_wine_frame(2400, seed=1)
    reference = _wine_table(data.iloc[:800])
    clean = compare(reference, _wine_table(data.iloc[800:1400]), WINE, report=False)
    shifted = compare(reference, _wine_table(warm_region(data.iloc[1400:2000])), WINE, report=False)
    assert not clean.drift and clean.verdict.moved == []
    assert shifted.drift and "alcohol" in {c.column for c in shifted.verdict.moved}
    assert "alcohol moved: effect" in shifted.verdict.reasons()
    assert set(shifted.verdict.columns) == set(WINE.columns)
    assert json.loads(json.dumps(as_dict(shifted), default=float))["drift"] is True


def test_a_retrained_version_finds_either_population_it_was_tested_on_normal() -> None:
    # v2's reference: original held-out rows and held-out labelled (warm-region) rows.
    data = make_wine_frame(3000, seed=2)
    reference = pd.concat(
        [_wine_table(data.iloc[:400]), _wine_table(warm_region(data.iloc[400:800]))],
        ignore_index=True,
    )
    reference[SEGMENT] = [SEGMENT_ORIGINAL] * 400 + [SEGMENT_LABELLED] * 400
    assert sorted(name for name, _ in parts(reference)) == sorted(
        ["all", SEGMENT_ORIGINAL, SEGMENT_LABELLED]
    )
    clean = compare(reference, _wine_table(data.iloc[1000:1500]), WINE, report=False)
    # Against the mixture a clean window looks shifted; against the original rows it is not.
    assert {v.reference: v.drift for v in clean.compared}["all"]
    assert not clean.drift and clean.verdict.reference == SEGMENT_ORIGINAL
    assert "against the original reference rows" in clean.verdict.reasons()
    warm = compare(reference, _wine_table(warm_region(data.iloc[1500:2000])), WINE, report=False)
    assert not warm.drift and warm.verdict.reference == SEGMENT_LABELLED
    # Unlike every population it was tested on: drift.
    far = data.iloc[2000:2500].copy()
    far["sulphates"] += 0.5
    assert compare(reference, _wine_table(far), WINE, report=False).drift


@pytest.mark.slow  # Evidently takes seconds to import
def test_the_evidently_report_is_written_beside_the_findings(tmp_path) -> None:
    data = make_wine_frame(1200, seed=4)
    result = compare(_wine_table(data.iloc[:600]), _wine_table(data.iloc[600:]), WINE)
    names = {path.name for path in result.save(tmp_path)}
    assert names == {"drift.json", "report.html", "report.json"}
    saved = json.loads((tmp_path / "drift.json").read_text())
    assert saved["drift"] is False and saved["thresholds"]["large_effect"] > 0
    assert set(saved["columns"]) == set(WINE.columns)


def test_new_handwriting_drifts_on_the_images_not_only_the_labels() -> None:
    held_out = load_digits_data(None, test_size=0.2, seed=42).x_test
    rng = np.random.default_rng(0)
    fixed = rng.dirichlet(np.ones(10), size=len(held_out))  # the same answers either way
    reference = DIGITS.rows(held_out, list(fixed))
    clean = DIGITS.rows(held_out[rng.permutation(len(held_out))], list(fixed))
    shifted = DIGITS.rows(new_handwriting(held_out, seed=1), list(fixed))
    assert not compare(reference, clean, DIGITS, report=False).drift
    result = compare(reference, shifted, DIGITS, report=False)
    assert result.drift  # with identical predictions, the images alone carry the drift
    assert not result.verdict.columns["predicted_class"].drifted
    assert result.verdict.moved and result.verdict.moved[0].column in DIGITS.inputs


def test_simulate_moves_one_feature_by_its_spread_or_breaks_relations_only(tmp_path) -> None:
    from mlstack.monitor.rules import spread
    from mlstack.monitor.simulate import wine_rows

    csv = write_uci_csv(make_wine_frame(400, seed=5), tmp_path / "wine.csv")
    clean = wine_rows(str(csv), 300, seed=1, shift=None)
    moved = wine_rows(str(csv), 300, seed=1, shift="feature:total sulfur dioxide:0.5")
    sd = spread(make_wine_frame(400, seed=5)["total sulfur dioxide"].to_numpy())
    delta = moved["total sulfur dioxide"] - clean["total sulfur dioxide"]
    np.testing.assert_allclose(delta, 0.5 * sd, rtol=1e-6)
    assert moved.drop(columns="total sulfur dioxide").equals(
        clean.drop(columns="total sulfur dioxide")
    )
    broken = wine_rows(str(csv), 300, seed=1, shift="relations")
    for column in WINE_FEATURES:  # every column keeps exactly its values
        assert sorted(broken[column]) == sorted(clean[column]), column
    assert not broken[list(WINE_RELATED)].equals(clean[list(WINE_RELATED)])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--shift", "sideways"], "--shift 'sideways' is not a wine shift; one of: warm,"),
        (["--shift", "feature:colour:1"], "no wine feature 'colour'; one of: fixed acidity,"),
        (["--shift", "feature:alcohol:far"], "'far' is not a number of standard deviations"),
        (["--kind", "digits", "--shift", "warm"], "is not a digits shift; one of: handwriting"),
    ],
)
def test_simulate_refuses_an_unknown_shift_in_one_line(args: list[str], expected: str) -> None:
    proc = run_entry(
        ["-m", "mlstack.monitor.simulate", "--server-url", "http://127.0.0.1:9", *args], None
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("python -m mlstack.monitor.simulate: error: ") and expected in last
