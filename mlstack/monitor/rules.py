"""The drift decision: what counts as the model seeing something new, with the reasons.

Every test has two gates, so neither a big window nor a small one decides by itself: an
**effect size** (how far the window moved, in units that mean the same at any window size)
must pass its threshold, and the test's **p-value** must be under its share of one
false-alarm budget (Bonferroni over every test of the check), so sampling noise in a small
window is not called a move.

- **A column moved.** Numbers: the mean distance between the window's and the reference's
  quantiles (5% to 95%), in the reference's standard deviations (winsorized at the 1st and
  99th percentiles, so a few corrupt values cannot inflate either); a shift of the whole column
  by half a standard deviation has effect 0.5. Significance: Kolmogorov-Smirnov. Classes: the
  total variation distance (the share of rows that would have to change class), chi-square.
  Any column moved `large_effect` or more is drift, whatever the others did and whatever the
  model leans on. A column the served version leans on counts from less: its threshold runs
  from `large_effect` (importance 0) down to `important_effect` (the most important column),
  by its importance relative to the top one. The prediction counts as the most important.
- **A joint shift** that no column shows alone (the relation between columns changed): a
  domain classifier tells window rows from reference rows. It is trained on one half of both
  and scored on the other, then the other way round: its mean AUC is the effect (0.5: cannot
  tell). Each half's AUC is a Mann-Whitney statistic of rows the model never saw, so its
  p-value is exact; the p-value of the mean of the two z-scores is conservative however
  correlated they are. (Pooling out-of-fold scores of 5 folds, the usual way, gave z-scores
  with a spread of 1.3 to 1.6 on windows of the same population: 1 in 100 clean windows of
  500 rows called shifted at p < 0.001.)
- **Performance**, when the window has labels: the live metric against the version's
  held-out one (rmse up by `rmse_increase`, or accuracy down by `accuracy_drop`), one-sided
  Mann-Whitney on the per-row losses.

All thresholds are in `Thresholds` and logged with every check (`as_params`). They were set
by measurement: `python -m benchmarks.monitoring --calibrate` (docs/monitoring.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

# The effect compares the central 90% (a few corrupt values, or one far row drawn twice into a
# small window, must not make a column look moved); the spread is winsorized at 1% / 99%.
QUANTILES = np.linspace(0.05, 0.95, 91)
WINSOR = (0.01, 0.99)
DOMAIN_MAX_ROWS = 2000  # per side: the classifier's cost stays flat for big windows


@dataclass(frozen=True)
class Thresholds:
    """Every number the decision uses; one place, logged with each check."""

    family_alpha: float = 0.01  # chance a clean window trips any test, split over the tests
    large_effect: float = 0.5  # standard deviations: any column moved this far is drift
    important_effect: float = 0.25  # ... the model's most important column, from this far
    category_effect: float = 0.2  # total variation distance: a class column moved
    domain_auc: float = 0.6  # the domain classifier's AUC from which a joint shift counts
    rmse_increase: float = 0.2  # live rmse over the held-out one, relative
    accuracy_drop: float = 0.05  # live accuracy under the held-out one, absolute
    min_labelled: int = 30  # labelled rows needed before performance is judged

    def as_params(self) -> dict[str, float]:
        """The thresholds as MLflow params (`threshold.<name>`)."""
        return {f"threshold.{k}": v for k, v in asdict(self).items()}

    def column_threshold(self, relative_importance: float | None, categorical: bool) -> float:
        """The effect from which a column counts as drift: `large_effect` for a column the
        model ignores (or whose importance is unknown), down to `important_effect` for its
        most important one."""
        if categorical:
            return self.category_effect
        weight = 0.0 if relative_importance is None else min(max(relative_importance, 0.0), 1.0)
        return self.large_effect - (self.large_effect - self.important_effect) * weight


@dataclass(frozen=True)
class ColumnFinding:
    """One column: how far it moved, whether that is more than noise, what it means."""

    column: str
    effect: float
    p_value: float
    threshold: float  # the effect from which it counts
    alpha: float  # the p-value under which it counts
    importance: float | None = None  # share of the model's sensitivity (None: not measured)
    rank: int | None = None  # 1 = the column the model leans on most
    of: int = 0  # how many columns have an importance

    @property
    def significant(self) -> bool:
        """The move is more than sampling noise."""
        return self.p_value < self.alpha

    @property
    def drifted(self) -> bool:
        """Moved at least its threshold, and significantly."""
        return self.significant and self.effect >= self.threshold

    def describe(self) -> str:
        """'sulphates moved: effect 0.67, importance rank 2 of 11 (21%)'."""
        return f"{self.column} moved: effect {self.effect:.2f}{self.importance_note()}"

    def importance_note(self) -> str:
        """', importance rank 2 of 11 (21%)', or '' when importance was not measured. The
        share tells a column the model ignores (tied ranks near 0%) from one it leans on."""
        if not self.rank:
            return ""
        share = self.importance or 0.0
        shown = f"{share:.0%}" if share >= 0.1 else f"{share:.1%}" if share >= 0.01 else "<1%"
        return f", importance rank {self.rank} of {self.of} ({shown})"


@dataclass(frozen=True)
class TestFinding:
    """A test of the whole window (the domain classifier, performance)."""

    name: str
    effect: float
    p_value: float
    threshold: float
    alpha: float
    detail: str = ""

    @property
    def drifted(self) -> bool:
        """Past its threshold, and significantly."""
        return self.p_value < self.alpha and self.effect >= self.threshold


@dataclass(frozen=True)
class Verdict:
    """The window against one reference: every finding and the call."""

    columns: dict[str, ColumnFinding]
    prediction: str
    domain: TestFinding | None
    performance: TestFinding | None
    thresholds: Thresholds
    reference: str = "all"  # which part of the reference the window was compared with
    reference_rows: int = 0

    @property
    def moved(self) -> list[ColumnFinding]:
        """The drifted columns, the most urgent first: the prediction, then by importance (in
        whole percent, so the columns a model ignores are not ordered by noise), then effect."""
        drifted = [c for c in self.columns.values() if c.drifted]
        return sorted(
            drifted,
            key=lambda c: (c.column != self.prediction, -round(c.importance or 0.0, 2), -c.effect),
        )

    @property
    def drift(self) -> bool:
        """Any column moved, the classifier tells the window apart, or performance fell."""
        tests = [t for t in (self.domain, self.performance) if t is not None]
        return bool(self.moved) or any(t.drifted for t in tests)

    def largest(self) -> ColumnFinding:
        """The column nearest its threshold (effect / threshold)."""
        return max(self.columns.values(), key=lambda c: c.effect / c.threshold)

    def severity(self) -> float:
        """How alarming: drifted findings count first, then the nearest miss (for choosing
        between references)."""
        count = len(self.moved) + sum(
            t.drifted for t in (self.domain, self.performance) if t is not None
        )
        return count + min(self.largest().effect / self.largest().threshold, 0.999)

    def reasons(self) -> str:
        """Why, in a few words: the moved columns (two at most, then a count), the domain
        classifier's AUC, performance; for no drift, the nearest miss."""
        parts: list[str] = []
        moved = self.moved
        if moved:
            parts += [c.describe() for c in moved[:2]]
            if len(moved) > 2:
                parts.append(f"+{len(moved) - 2} more column{'s' if len(moved) > 3 else ''}")
        else:
            near = self.largest()
            parts.append(
                f"largest move: {near.column} {near.effect:.2f} of {near.threshold:.2f}"
                + near.importance_note()
            )
        if self.domain is not None:
            joint = "joint shift: " if self.domain.drifted and not moved else ""
            parts.append(f"{joint}domain AUC {self.domain.effect:.2f}")
        if self.performance is not None and (self.performance.drifted or not moved):
            parts.append(self.performance.detail)
        if self.reference != "all":
            parts.append(f"against the {self.reference} reference rows")
        return "; ".join(parts)


def spread(values: np.ndarray) -> float:
    """The standard deviation of `values` winsorized at their 1st and 99th percentiles."""
    low, high = np.quantile(values, WINSOR)
    return float(np.clip(values, low, high).std())


def numeric_effect(reference: np.ndarray, current: np.ndarray) -> float:
    """The mean gap between the two samples' quantiles (5% .. 95%), in reference standard
    deviations (see `spread`). For a reference that does not vary, in the pooled spread;
    0 when neither varies."""
    gap = float(
        np.mean(np.abs(np.quantile(current, QUANTILES) - np.quantile(reference, QUANTILES)))
    )
    scale = spread(reference)
    if scale < 1e-12:
        scale = spread(np.concatenate([reference, current]))
    return gap / scale if scale >= 1e-12 else 0.0


def category_effect(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """Total variation distance between the class frequencies, and the chi-square p-value."""
    from scipy.stats import chi2_contingency

    table = pd.concat(
        [reference.astype(str).value_counts(), current.astype(str).value_counts()], axis=1
    ).fillna(0.0)
    shares = table / table.sum(axis=0)
    distance = float(shares.iloc[:, 0].sub(shares.iloc[:, 1]).abs().sum() / 2)
    if len(table) < 2:
        return distance, 1.0
    return distance, float(chi2_contingency(table.to_numpy()).pvalue)


def ks_p_value(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (1.0 when both are one constant)."""
    from scipy.stats import ks_2samp

    if np.ptp(reference) == 0 and np.ptp(current) == 0 and reference[0] == current[0]:
        return 1.0
    return float(ks_2samp(reference, current, method="asymp").pvalue)


def domain_test(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], seed: int = 0
) -> tuple[float, float]:
    """(AUC, one-sided p-value) of a classifier telling `current` rows from `reference` rows,
    each half scored by the model trained on the other (see the module docstring). The
    classifier is a logistic regression on each column's normal scores, their squares and
    pairwise products, so it sees moved centres, spreads and relations between columns (a
    correlation that flipped) while staying too smooth to memorize rows. Identical rows share
    a half, so a request sent twice is not learnt in one half and recognised in the other."""
    from scipy.stats import norm
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, QuantileTransformer, StandardScaler

    rng = np.random.default_rng(seed)
    sides = []
    for frame in (reference, current):
        values = frame[list(columns)].to_numpy(dtype="float64")
        if len(values) > DOMAIN_MAX_ROWS:
            values = values[rng.choice(len(values), DOMAIN_MAX_ROWS, replace=False)]
        sides.append(values)
    x = np.vstack(sides)
    y = np.r_[np.zeros(len(sides[0])), np.ones(len(sides[1]))]
    _, groups = np.unique(x, axis=0, return_inverse=True)
    aucs, z_scores = [], []
    halves = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=seed)
    for train, test in halves.split(x, y, groups.ravel()):
        model = make_pipeline(
            QuantileTransformer(n_quantiles=min(200, len(train)), output_distribution="normal"),
            PolynomialFeatures(degree=2, include_bias=False),
            StandardScaler(),
            LogisticRegression(C=0.05, max_iter=1000),
        ).fit(x[train], y[train])
        auc = float(roc_auc_score(y[test], model.decision_function(x[test])))
        n0, n1 = int((y[test] == 0).sum()), int((y[test] == 1).sum())
        sd = np.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1))  # the AUC's spread when nothing differs
        aucs.append(auc)
        z_scores.append((auc - 0.5) / sd)
    return float(np.mean(aucs)), float(norm.sf(np.mean(z_scores)))


def worse_losses_p_value(reference: np.ndarray, current: np.ndarray) -> float:
    """One-sided Mann-Whitney p-value that the window's per-row losses are larger."""
    from scipy.stats import mannwhitneyu

    if len(np.unique(np.r_[reference, current])) < 2:
        return 1.0
    return float(mannwhitneyu(current, reference, alternative="greater").pvalue)


@dataclass(frozen=True)
class Columns:
    """Which columns the decision reads, and what it knows about them."""

    numerical: tuple[str, ...]
    categorical: tuple[str, ...]
    inputs: tuple[str, ...]  # the model's inputs (or statistics of them): the domain test's
    prediction: str
    importance: Mapping[str, float] = field(default_factory=dict)  # input column -> share


def _ranks(importance: Mapping[str, float]) -> dict[str, int]:
    order = sorted(importance, key=lambda c: -importance[c])
    return {column: i + 1 for i, column in enumerate(order)}


def decide(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Columns,
    thresholds: Thresholds | None = None,
    *,
    performance: PerformanceInput | None = None,
    domain: bool = True,
) -> Verdict:
    """Compare `current` (the window) with `reference`, column by column, jointly (the domain
    classifier, when `domain`) and on performance (when given). One false-alarm budget,
    `thresholds.family_alpha`, is split over all the tests."""
    thresholds = thresholds or Thresholds()
    names = (*columns.numerical, *columns.categorical)
    tests = len(names) + int(domain) + int(performance is not None)
    alpha = thresholds.family_alpha / tests
    top = max(columns.importance.values(), default=0.0)
    ranks = _ranks(columns.importance)
    findings: dict[str, ColumnFinding] = {}
    for name in names:
        categorical = name in columns.categorical
        if categorical:
            effect, p_value = category_effect(reference[name], current[name])
        else:
            ref = reference[name].to_numpy(dtype="float64")
            cur = current[name].to_numpy(dtype="float64")
            effect, p_value = numeric_effect(ref, cur), ks_p_value(ref, cur)
        share = columns.importance.get(name)
        relative = 1.0 if name == columns.prediction else (share / top if share and top else None)
        findings[name] = ColumnFinding(
            column=name,
            effect=effect,
            p_value=p_value,
            threshold=thresholds.column_threshold(relative, categorical),
            alpha=alpha,
            importance=share,
            rank=ranks.get(name),
            of=len(ranks),
        )
    domain_finding = None
    if domain:
        auc, p_value = domain_test(reference, current, columns.inputs)
        domain_finding = TestFinding("domain", auc, p_value, thresholds.domain_auc, alpha)
    perf_finding = performance.finding(thresholds, alpha) if performance is not None else None
    return Verdict(
        columns=findings,
        prediction=columns.prediction,
        domain=domain_finding,
        performance=perf_finding,
        thresholds=thresholds,
        reference_rows=len(reference),
    )


@dataclass(frozen=True)
class PerformanceInput:
    """The window's labelled rows against the reference's, as the profile measures them."""

    metric: str  # "rmse" or "accuracy"
    live: float
    heldout: float
    live_losses: np.ndarray  # per-row loss (squared error, or 1 for a wrong class)
    reference_losses: np.ndarray

    def finding(self, thresholds: Thresholds, alpha: float) -> TestFinding:
        """The performance test: how much worse, and whether more than noise."""
        if self.metric == "rmse":
            change = self.live / self.heldout - 1.0 if self.heldout > 0 else 0.0
            threshold, shown = thresholds.rmse_increase, f"{change:+.0%}"
        else:
            change, threshold, shown = self.heldout - self.live, thresholds.accuracy_drop, ""
        enough = len(self.live_losses) >= thresholds.min_labelled
        p_value = worse_losses_p_value(self.reference_losses, self.live_losses) if enough else 1.0
        detail = f"live {self.metric} {self.live:.3f} vs held-out {self.heldout:.3f}"
        detail += f" ({shown})" if shown else ""
        if not enough:
            detail += f" (only {len(self.live_losses)} labelled rows)"
        return TestFinding("performance", change, p_value, threshold, alpha, detail)


def least_alarming(verdicts: Sequence[Verdict]) -> Verdict:
    """Of the window's comparisons with the parts of a version's reference, the one that finds
    least: a window that looks like any population the version was tested on is normal."""
    return min(verdicts, key=lambda v: v.severity())
