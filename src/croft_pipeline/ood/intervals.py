"""Paired bootstrap confidence intervals for the difference of two methods on the same data.

The data come in independent *units* (a held-out fold × a training seed); within a unit both
methods are scored on the same test samples, in one or more *strata* that are resampled
separately (e.g. the ID test set and the open-set set of an AUROC). One bootstrap draw picks
units with replacement and, within each picked unit, resamples every stratum with replacement
(the same resample for both methods: the pairing), and averages the per-unit differences of the
metric. The interval is the percentile interval of the draws; the point estimate is the mean
over units of the difference on the full data. This two-level (hierarchical) bootstrap covers
the seed and fold variation and the finite test sets. It is written by hand because
``scipy.stats.bootstrap`` resamples one level only; the tests check it against scipy where the
two coincide, and against hand cases.

A resample is represented by per-sample counts (multinomial weights), so a metric is evaluated
for many draws at once without copying or re-sorting the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# metric(values, weights): ``values`` one array per stratum ``[n_s]``; ``weights`` one array per
# stratum ``[draws, n_s]`` (resample counts); returns ``[draws]``.
Metric = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], np.ndarray]
CHUNK = 250  # bootstrap draws evaluated at once (bounds memory to CHUNK x samples counts)


@dataclass(frozen=True)
class PairedUnit:
    """One unit's per-sample values of methods A and B, per stratum (same samples, same order)."""

    a: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if len(self.a) != len(self.b) or not self.a:
            raise ValueError("methods A and B need the same, non-empty list of strata")
        for index, (x, y) in enumerate(zip(self.a, self.b, strict=True)):
            if len(x) != len(y) or len(x) == 0:
                raise ValueError(
                    f"stratum {index}: A has {len(x)} samples and B {len(y)}; a paired "
                    "comparison needs the same non-empty set of samples"
                )


@dataclass(frozen=True)
class Interval:
    difference: float  # mean over units of metric(A) - metric(B) on the full data
    low: float
    high: float
    level: float
    units: int
    draws: int

    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def mean_metric(values: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> np.ndarray:
    """The (resampled) mean of one stratum, e.g. accuracy from per-sample correctness."""
    (value,), (weight,) = values, weights
    return weight @ np.asarray(value, dtype=np.float64) / len(value)


def auroc_metric(values: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> np.ndarray:
    """The (resampled) AUROC of stratum 0 (positive) against stratum 1 (negative), ties half.

    Each negative's weight is accumulated in score order once per draw; a positive then counts
    the negative weight strictly below it plus half of the weight equal to it.
    """
    (positive, negative), (w_pos, w_neg) = values, weights
    order = np.argsort(negative, kind="stable")
    sorted_neg = np.asarray(negative, dtype=np.float64)[order]
    below = np.searchsorted(sorted_neg, positive, side="left")
    up_to = np.searchsorted(sorted_neg, positive, side="right")
    cumulative = np.concatenate(
        [np.zeros((len(w_neg), 1)), np.cumsum(w_neg[:, order], axis=1)], axis=1
    )
    credit = (cumulative[:, below] + cumulative[:, up_to]) / 2.0  # [draws, n_pos]
    return (w_pos * credit).sum(axis=1) / (len(positive) * len(negative))


def _full(unit_values: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.ones((1, len(value))) for value in unit_values]


def _resample_counts(n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``[draws, n]``: how often each of ``n`` samples is drawn in each resample of size ``n``."""
    picks = rng.integers(0, n, (draws, n)) + (np.arange(draws) * n)[:, None]
    return np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n).astype(np.float64)


def _unit_replicates(
    unit: PairedUnit, metric: Metric, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """``draws`` paired bootstrap replicates of metric(A) - metric(B) within one unit."""
    out = []
    for start in range(0, draws, CHUNK):
        count = min(CHUNK, draws - start)
        weights = [_resample_counts(len(s), count, rng) for s in unit.a]
        out.append(np.asarray(metric(unit.a, weights)) - np.asarray(metric(unit.b, weights)))
    return np.concatenate(out)


def paired_bootstrap(
    units: Sequence[PairedUnit],
    metric: Metric,
    draws: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The paired, two-level bootstrap interval of ``metric(A) - metric(B)`` (module docstring)."""
    if not units:
        raise ValueError("paired_bootstrap needs at least one unit")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    point = float(np.mean([metric(u.a, _full(u.a))[0] - metric(u.b, _full(u.b))[0] for u in units]))
    replicates = np.stack([_unit_replicates(u, metric, draws, rng) for u in units])  # [U, B]
    n_units = len(units)
    chosen = rng.integers(0, n_units, (draws, n_units))  # the units of each draw
    which = rng.integers(0, draws, (draws, n_units))  # an independent replicate per pick
    totals = replicates[chosen, which].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(totals, [tail, 1.0 - tail])
    return Interval(point, float(low), float(high), level, n_units, draws)
