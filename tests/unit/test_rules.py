"""The drift decision's rules on synthetic frames whose answer is known: a large move of one
column is drift whatever the others did; a moderate move counts for the column the model
leans on and not for one it ignores; a joint shift that leaves every column's own
distribution alone is caught by the domain classifier; clean windows, big or small, are not
drift; performance; and importance from a known linear model and by permutation."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mlstack.monitor.importance import linear_importance, permutation_importance, region_masks
from mlstack.monitor.rules import (
    Columns,
    PerformanceInput,
    Thresholds,
    decide,
    least_alarming,
    numeric_effect,
    spread,
)

INPUTS = ("a", "b", "c", "d", "e", "f")
# The model leans on `a` and barely on `b`; c..f it ignores.
COEFFICIENTS = {"a": 3.0, "b": 0.3, "c": 0.0, "d": 0.0, "e": 0.0, "f": 0.0}
COLUMNS = Columns(
    numerical=(*INPUTS, "prediction"),
    categorical=(),
    inputs=INPUTS,
    prediction="prediction",
    importance={"a": 0.9, "b": 0.1, "c": 0.0, "d": 0.0, "e": 0.0, "f": 0.0},
)


def _table(rows: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """Independent standard normal inputs (moved by `shift`, in standard deviations) and the
    model's prediction from them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(INPUTS))), columns=list(INPUTS))
    for column, by in (shift or {}).items():
        frame[column] += by
    frame["prediction"] = sum(frame[c] * w for c, w in COEFFICIENTS.items())
    return frame


REFERENCE = _table(1000, seed=0)


@pytest.mark.parametrize("rows", [100, 500, 5000])
def test_a_clean_window_is_not_drift_at_any_size(rows: int) -> None:
    verdict = decide(REFERENCE, _table(rows, seed=rows), COLUMNS)
    assert not verdict.drift and verdict.moved == []
    assert verdict.reasons().startswith("largest move: ")
    assert verdict.domain is not None and not verdict.domain.drifted


def test_a_big_window_makes_a_tiny_move_significant_but_not_drift() -> None:
    # 20,000 rows: a 0.05 sd move of `a` is far beyond noise (p tiny) yet not a move to act on.
    verdict = decide(REFERENCE, _table(20000, seed=1, shift={"a": 0.08}), COLUMNS, domain=False)
    finding = verdict.columns["a"]
    assert finding.significant and not finding.drifted
    assert not verdict.drift


def test_small_clean_windows_stay_quiet() -> None:
    # Noise in a 30-row window moves quantiles a lot; the p-value gate keeps that from a call.
    alarms = [
        decide(REFERENCE, _table(30, seed=100 + i), COLUMNS, domain=False).drift for i in range(40)
    ]
    assert sum(alarms) <= 1


def test_one_large_move_is_drift_whatever_the_other_columns_did() -> None:
    # `f` is ignored by the model and the only column that moved; 5 of 6 inputs are untouched.
    verdict = decide(REFERENCE, _table(300, seed=2, shift={"f": 1.0}), COLUMNS)
    assert verdict.drift
    assert [c.column for c in verdict.moved] == ["f"]
    assert verdict.columns["f"].effect == pytest.approx(1.0, abs=0.2)
    assert verdict.reasons().startswith("f moved: effect ")
    assert "importance rank 6 of 6 (<1%)" in verdict.reasons()  # the last: the model ignores it


def test_a_moderate_move_counts_for_the_column_the_model_leans_on_only() -> None:
    moderate = 0.35  # between important_effect (0.25) and large_effect (0.5)
    thresholds = Thresholds()
    assert thresholds.important_effect < moderate < thresholds.large_effect
    leaned_on = decide(REFERENCE, _table(1000, seed=3, shift={"a": moderate}), COLUMNS)
    ignored = decide(REFERENCE, _table(1000, seed=3, shift={"c": moderate}), COLUMNS)
    assert leaned_on.drift and "a" in {c.column for c in leaned_on.moved}
    assert leaned_on.columns["a"].rank == 1
    expected = r"\ba moved: effect 0\.[34]\d, importance rank 1 of 6 \(90%\)"
    assert re.search(expected, leaned_on.reasons())
    # The same move of an ignored column is significant, but under its threshold.
    assert ignored.columns["c"].significant and not ignored.columns["c"].drifted
    assert not ignored.drift


def test_the_threshold_runs_from_large_to_important_by_relative_importance() -> None:
    t = Thresholds()
    assert t.column_threshold(None, categorical=False) == t.large_effect
    assert t.column_threshold(0.0, categorical=False) == t.large_effect
    assert t.column_threshold(1.0, categorical=False) == t.important_effect
    half = t.column_threshold(0.5, categorical=False)
    assert half == pytest.approx((t.large_effect + t.important_effect) / 2)
    assert t.column_threshold(0.5, categorical=True) == t.category_effect
    findings = decide(REFERENCE, _table(200, seed=4), COLUMNS, domain=False).columns
    assert findings["prediction"].threshold == t.important_effect  # counts as the most important
    assert findings["a"].threshold == t.important_effect
    assert findings["c"].threshold == t.large_effect


def test_a_joint_shift_with_every_marginal_unchanged_is_caught_by_the_domain_classifier() -> None:
    rng = np.random.default_rng(5)

    def correlated(rows: int) -> pd.DataFrame:
        a = rng.normal(size=rows)
        b = 0.9 * a + np.sqrt(1 - 0.9**2) * rng.normal(size=rows)
        frame = pd.DataFrame({"a": a, "b": b})
        for column in INPUTS[2:]:
            frame[column] = rng.normal(size=rows)
        frame["prediction"] = 0.0  # a model that says the same to every row
        return frame

    reference = correlated(1000)
    window = correlated(500)
    # Shuffle `b` against `a`: each column keeps exactly its own values, the relation is gone.
    window["b"] = rng.permutation(window["b"].to_numpy())
    verdict = decide(reference, window, COLUMNS)
    assert verdict.moved == []  # no column shows it alone
    assert verdict.domain is not None and verdict.domain.drifted
    assert verdict.domain.effect > Thresholds().domain_auc
    assert verdict.drift and "joint shift: domain AUC 0." in verdict.reasons()
    # And the relation kept: the classifier cannot tell.
    assert not decide(reference, correlated(500), COLUMNS).drift


def test_a_class_column_moved_is_drift_by_total_variation_distance() -> None:
    rng = np.random.default_rng(6)
    columns = Columns(numerical=(), categorical=("kind",), inputs=(), prediction="kind")
    reference = pd.DataFrame({"kind": rng.choice(["x", "y", "z"], 1000, p=[0.6, 0.3, 0.1])})
    same = pd.DataFrame({"kind": rng.choice(["x", "y", "z"], 400, p=[0.6, 0.3, 0.1])})
    moved = pd.DataFrame({"kind": rng.choice(["x", "y", "z"], 400, p=[0.3, 0.3, 0.4])})
    assert not decide(reference, same, columns, domain=False).drift
    verdict = decide(reference, moved, columns, domain=False)
    assert verdict.drift and verdict.columns["kind"].effect == pytest.approx(0.3, abs=0.06)


def _performance(live_losses: np.ndarray, reference_losses: np.ndarray) -> PerformanceInput:
    return PerformanceInput(
        metric="rmse",
        live=float(np.sqrt(live_losses.mean())),
        heldout=float(np.sqrt(reference_losses.mean())),
        live_losses=live_losses,
        reference_losses=reference_losses,
    )


def test_performance_drift_needs_a_real_loss_increase_and_enough_labels() -> None:
    rng = np.random.default_rng(7)
    reference_losses = rng.normal(0, 0.6, 500) ** 2
    worse = _performance(rng.normal(0, 0.9, 200) ** 2, reference_losses)
    same = _performance(rng.normal(0, 0.6, 200) ** 2, reference_losses)
    few = _performance(rng.normal(0, 0.9, 10) ** 2, reference_losses)
    window = _table(200, seed=8)
    verdict = decide(REFERENCE, window, COLUMNS, performance=worse, domain=False)
    assert verdict.drift and verdict.moved == [] and verdict.performance.drifted
    assert "live rmse" in verdict.reasons() and "vs held-out" in verdict.reasons()
    assert not decide(REFERENCE, window, COLUMNS, performance=same, domain=False).drift
    quiet = decide(REFERENCE, window, COLUMNS, performance=few, domain=False)
    assert not quiet.drift and "(only 10 labelled rows)" in quiet.reasons()


def test_one_false_alarm_budget_is_split_over_every_test() -> None:
    t = Thresholds(family_alpha=0.014)
    verdict = decide(REFERENCE, _table(100, seed=9), COLUMNS, t)  # 7 columns + the domain test
    assert [f.alpha for f in verdict.columns.values()] == [pytest.approx(0.014 / 8)] * 7
    assert verdict.domain is not None and verdict.domain.alpha == pytest.approx(0.014 / 8)
    params = t.as_params()
    assert params["threshold.family_alpha"] == 0.014
    assert all(key.startswith("threshold.") for key in params)
    assert {"threshold.large_effect", "threshold.domain_auc"} <= set(params)


def test_the_least_alarming_comparison_is_the_call() -> None:
    moved = decide(REFERENCE, _table(300, seed=10, shift={"f": 1.0}), COLUMNS, domain=False)
    calm = decide(REFERENCE, _table(300, seed=10), COLUMNS, domain=False)
    assert least_alarming([moved, calm]) is calm and least_alarming([moved]) is moved


def test_the_effect_is_in_standard_deviations_and_ignores_a_few_corrupt_values() -> None:
    rng = np.random.default_rng(11)
    reference = rng.normal(10, 2, 20000)
    assert numeric_effect(reference, rng.normal(11, 2, 20000)) == pytest.approx(0.5, abs=0.05)
    assert numeric_effect(reference, rng.normal(10, 2, 20000)) < 0.05
    corrupt = reference.copy()
    corrupt[:10] = 1e9  # ten absurd values do not make the spread huge
    assert spread(corrupt) == pytest.approx(spread(reference), rel=0.05)
    assert numeric_effect(np.ones(100), np.ones(50)) == 0.0  # nothing varies, nothing moved
    assert numeric_effect(np.ones(100), np.r_[np.ones(25), np.full(25, 3.0)]) > 0.5


def test_linear_importance_is_coefficient_times_spread() -> None:
    rng = np.random.default_rng(12)
    a = rng.normal(size=500)
    inputs = pd.DataFrame({"a": a, "b": 4.0 * rng.permutation(a), "c": rng.normal(size=500)})
    # b's coefficient is 4x smaller but b spreads 4x wider: it swings the output as much as a.
    importance = linear_importance(np.array([2.0, 0.5, 0.0]), inputs)
    assert importance == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})
    # A fitted model finds the same from its own coefficients.
    from sklearn.linear_model import LinearRegression

    target = 2.0 * inputs["a"] + 0.5 * inputs["b"] + rng.normal(0, 0.01, 500)
    fitted = LinearRegression().fit(inputs, target)
    assert linear_importance(fitted.coef_, inputs) == pytest.approx(importance, abs=0.01)
    with pytest.raises(ValueError, match="2 coefficients for 3 columns"):
        linear_importance(np.array([1.0, 2.0]), inputs)


def test_permutation_importance_finds_the_inputs_and_the_region_the_model_reads() -> None:
    rng = np.random.default_rng(13)
    table = rng.normal(size=(400, 3))
    columns = {name: np.array([i == j for j in range(3)]) for i, name in enumerate("xyz")}
    importance = permutation_importance(lambda x: 3.0 * x[:, 1], table, columns)
    assert importance["y"] == pytest.approx(1.0) and importance["x"] == importance["z"] == 0.0

    images = rng.uniform(size=(300, 8, 8))
    masks = region_masks((8, 8))

    def top_left_classifier(batch: np.ndarray) -> np.ndarray:
        ink = batch[:, :2, :2].mean(axis=(1, 2))  # reads only region_00
        return np.stack([ink, 1.0 - ink], axis=1)

    by_region = permutation_importance(top_left_classifier, images, masks)
    assert max(by_region, key=by_region.get) == "region_00"
    assert by_region["region_00"] == pytest.approx(1.0)
    assert sum(by_region.values()) == pytest.approx(1.0)


def test_region_masks_tile_the_image_once() -> None:
    masks = region_masks((8, 8, 1))
    assert len(masks) == 16 and set(masks) == {f"region_{r}{c}" for r in range(4) for c in range(4)}
    coverage = sum(mask.astype(int) for mask in masks.values())
    assert (coverage == 1).all()
    assert masks["region_00"][:2, :2].all() and not masks["region_00"][2:, :].any()
    assert sum(region_masks((28, 28)).values()).min() == 1  # uneven splits still tile
