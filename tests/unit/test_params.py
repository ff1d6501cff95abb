"""Parameter validation: every out-of-range value is refused with a message naming the flag."""

from __future__ import annotations

import pytest

from mlstack.digits import DigitsParams
from mlstack.errors import UsageError
from mlstack.registry import validate_model_name
from mlstack.wine import WineParams


@pytest.mark.parametrize(
    ("params", "flag"),
    [
        (WineParams(alpha=-0.1), "--alpha"),
        (WineParams(alpha=float("nan")), "--alpha"),
        (WineParams(l1_ratio=-0.01), "--l1-ratio"),
        (WineParams(l1_ratio=1.01), "--l1-ratio"),
        (WineParams(test_size=0.0), "--test-size"),
        (WineParams(test_size=1.0), "--test-size"),
        (WineParams(seed=-1), "--seed"),
        (DigitsParams(epochs=0), "--epochs"),
        (DigitsParams(batch_size=0), "--batch-size"),
        (DigitsParams(learning_rate=0.0), "--learning-rate"),
        (DigitsParams(learning_rate=float("inf")), "--learning-rate"),
        (DigitsParams(test_size=1.5), "--test-size"),
    ],
)
def test_out_of_range_values_name_their_flag(params: WineParams | DigitsParams, flag: str) -> None:
    with pytest.raises(UsageError, match=f"^{flag} must"):
        params.validate()


@pytest.mark.parametrize(
    "params",
    [WineParams(), WineParams(alpha=0, l1_ratio=0), WineParams(l1_ratio=1), DigitsParams()],
)
def test_boundary_and_default_values_are_accepted(params: WineParams | DigitsParams) -> None:
    params.validate()


@pytest.mark.parametrize("name", ["", "bad/name", "-lead", "a b", "wine@champion", "x" * 200])
def test_model_names_unusable_in_uris_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="invalid model name"):
        validate_model_name(name)


@pytest.mark.parametrize("name", ["wine", "wine-v2", "Digits_CNN.1"])
def test_uri_safe_model_names_pass(name: str) -> None:
    assert validate_model_name(name) == name
