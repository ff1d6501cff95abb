"""Each model's hyper-parameters, their accepted ranges and the one check of them.

Standard library only: the training scripts parse and check their arguments with these before
they import MLflow, scikit-learn or TensorFlow, so `--help` and a bad value answer at once.
`mlstack.wine` and `mlstack.digits` re-export their model's class.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mlstack.errors import UsageError

WINE_EXPERIMENT = "wine"
DIGITS_EXPERIMENT = "digits"


@dataclass(frozen=True)
class Bounds:
    """The values a parameter accepts: finite, and at or past each bound given.

    `wording` comes before the rule in the message: "a number" -> "a number >= 0",
    "within" -> "within [0, 1]".
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: the bound itself is refused
    high_open: bool = False
    wording: str = ""

    def admits(self, value: float) -> bool:
        """True when `value` is in range (NaN and infinities never are)."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """The rule in words, as the error message says it."""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            rule = f"{left}{self.low:g}, {self.high:g}{right}"
        elif self.low is not None:
            rule = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            rule = f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"{self.wording} {rule}".strip()


def bounded(default: Any, **bounds: Any) -> Any:
    """A dataclass field with a default and the Bounds `check_ranges` applies to it."""
    return dataclasses.field(default=default, metadata={"bounds": Bounds(**bounds)})


def check_ranges(params: Any) -> None:
    """Raise UsageError naming the first field (in declaration order) that is out of range.

    The message names the flag (`--field-name`), the rule, the value and the field's default as
    an example, e.g. "--alpha must be a number >= 0, got -1.0; e.g. --alpha 0.5".
    """
    for field in dataclasses.fields(params):
        bounds = field.metadata.get("bounds")
        value = getattr(params, field.name)
        if bounds is None or bounds.admits(value):
            continue
        flag = "--" + field.name.replace("_", "-")
        raise UsageError(
            f"{flag} must be {bounds.describe()}, got {value}; e.g. {flag} {field.default:g}"
        )


# A test share in (0, 1): both parts of the split must be non-empty.
FRACTION = {"low": 0, "high": 1, "low_open": True, "high_open": True, "wording": "a fraction in"}


@dataclass(frozen=True)
class WineParams:
    """Hyper-parameters and split of one wine run."""

    alpha: float = bounded(0.5, low=0, wording="a number")
    l1_ratio: float = bounded(0.5, low=0, high=1, wording="within")
    test_size: float = bounded(0.25, **FRACTION)
    seed: int = bounded(42, low=0)

    def validate(self) -> None:
        """Raise UsageError naming the first out-of-range value and the accepted range."""
        check_ranges(self)


@dataclass(frozen=True)
class DigitsParams:
    """Hyper-parameters and split of one digits run."""

    epochs: int = bounded(15, low=1)
    batch_size: int = bounded(32, low=1)
    learning_rate: float = bounded(1e-3, low=0, low_open=True)
    test_size: float = bounded(0.2, **FRACTION)
    seed: int = bounded(42, low=0)

    def validate(self) -> None:
        """Raise UsageError naming the first out-of-range value and the accepted range."""
        check_ranges(self)
