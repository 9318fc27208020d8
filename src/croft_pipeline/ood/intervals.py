"""Paired bootstrap confidence intervals for the difference of two methods on the same data.

The data come in *units* (a held-out fold × a training seed); within a unit both methods are
scored on the same test samples, in one or more *strata* (e.g. the ID test set and the open-set
set of an AUROC). The statistic is the mean over units of metric(A) − metric(B).

One bootstrap draw resamples both levels, crossed:
- the units, with replacement (seed and fold variation);
- the test images, once for the whole draw: every image (by its key, e.g. its sha256) gets a
  Poisson(1) count, applied in every unit that holds it. The same open-set images are scored in
  every seed, so their sampling noise is shared by the units and must not average out across
  them; resampling each unit's images independently would make the interval too narrow.
With *clusters* (units that share a random factor, e.g. the pretraining seed of the backbone
they ran on), the units are resampled in two stages instead: the clusters with replacement, then
the units of each drawn cluster with replacement (the image counts stay as above), so the interval
carries the spread between clusters too; the statistic is the mean over the drawn units. Without
clusters (or with a single one, the same resampling) the units are resampled in one stage.
The pairing: both methods see the same counts. The interval is the percentile interval of the
draws; the point estimate is the difference on the full data. Written by hand because
``scipy.stats.bootstrap`` resamples one level only; the tests compare the two where they agree,
and check hand cases.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# metric(values, weights): ``values`` one array per stratum ``[n_s]``; ``weights`` one array per
# stratum ``[draws, n_s]`` (resample counts); returns ``[draws]``.
Metric = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], np.ndarray]
CHUNK = 250  # bootstrap draws evaluated at once (bounds memory to CHUNK x images counts)


@dataclass(frozen=True)
class PairedUnit:
    """One unit's per-sample values of methods A and B per stratum, on the same samples in the
    same order, and each sample's key (the same key in two units = the same test image)."""

    a: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]
    keys: tuple[np.ndarray, ...] | None = None  # None: every sample is its own image

    def __post_init__(self) -> None:
        if len(self.a) != len(self.b) or not self.a:
            raise ValueError("methods A and B need the same, non-empty list of strata")
        for index, (x, y) in enumerate(zip(self.a, self.b, strict=True)):
            if len(x) != len(y) or len(x) == 0:
                raise ValueError(
                    f"stratum {index}: A has {len(x)} samples and B {len(y)}; a paired "
                    "comparison needs the same non-empty set of samples"
                )
        if self.keys is not None and [len(k) for k in self.keys] != [len(x) for x in self.a]:
            raise ValueError("PairedUnit.keys must give one key per sample of every stratum")


@dataclass(frozen=True)
class Interval:
    difference: float  # mean over units of metric(A) - metric(B) on the full data
    low: float
    high: float
    level: float
    units: int
    draws: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def beyond_noise(low: float, high: float) -> int:
    """+1 when the whole interval is above 0, −1 when below, 0 when it contains 0."""
    return 1 if low > 0 else -1 if high < 0 else 0


def mean_metric(values: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> np.ndarray:
    """The (weighted) mean of one stratum, e.g. accuracy from per-sample correctness."""
    (value,), (weight,) = values, weights
    return weight @ np.asarray(value, dtype=np.float64) / weight.sum(axis=1)


def auroc_metric(values: Sequence[np.ndarray], weights: Sequence[np.ndarray]) -> np.ndarray:
    """The (weighted) AUROC of stratum 0 (positive) against stratum 1 (negative), ties half.

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
    return (w_pos * credit).sum(axis=1) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def _image_ids(units: Sequence[PairedUnit]) -> tuple[list[list[np.ndarray]], int]:
    """Per unit and stratum, an integer id per sample (equal keys, equal ids); and the count."""
    index: dict = {}
    ids = []
    for u, unit in enumerate(units):
        strata = []
        for s, values in enumerate(unit.a):
            keys = (
                unit.keys[s] if unit.keys is not None else [(u, s, i) for i in range(len(values))]
            )
            strata.append(np.array([index.setdefault(key, len(index)) for key in keys]))
        ids.append(strata)
    return ids, len(index)


def _counts(n_images: int, draws: int, rng: np.random.Generator, ids) -> np.ndarray:
    """Poisson(1) counts ``[draws, n_images]``; a draw that leaves a stratum of some unit empty
    is drawn again (rare: probability e^-n for n images)."""
    counts = rng.poisson(1.0, (draws, n_images)).astype(np.float64)
    for strata in ids:
        for stratum in strata:
            empty = counts[:, stratum].sum(axis=1) == 0
            while empty.any():
                counts[empty] = rng.poisson(1.0, (int(empty.sum()), n_images))
                empty = counts[:, stratum].sum(axis=1) == 0
    return counts


def _cluster_members(clusters: Sequence[Hashable] | None, n_units: int) -> np.ndarray | None:
    """``[clusters, largest]`` unit indices per cluster, padded with -1; None for one stage."""
    if clusters is None:
        return None
    if len(clusters) != n_units:
        raise ValueError(f"clusters: {len(clusters)} labels for {n_units} units")
    groups: dict[Hashable, list[int]] = {}
    for unit, cluster in enumerate(clusters):
        groups.setdefault(cluster, []).append(unit)
    if len(groups) == 1:  # one cluster: drawn every time, then its units, as in one stage
        return None
    members = np.full((len(groups), max(map(len, groups.values()))), -1)
    for row, indices in enumerate(groups.values()):
        members[row, : len(indices)] = indices
    return members


def _resampled_mean(
    per_unit: np.ndarray, members: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """``[draws]``: per draw, the mean of ``per_unit`` ``[draws, units]`` over resampled units:
    in one stage, or clusters then units within each drawn cluster (``members``)."""
    count, n_units = per_unit.shape
    if members is None:
        chosen = rng.integers(0, n_units, (count, n_units))  # the units of each draw
        return np.take_along_axis(per_unit, chosen, axis=1).mean(axis=1)
    sizes = (members >= 0).sum(axis=1)
    clusters = rng.integers(0, len(members), (count, len(members)))  # [draws, slots]
    drawn_sizes = sizes[clusters][..., None]  # [draws, slots, 1]
    within = (rng.random((*clusters.shape, members.shape[1])) * drawn_sizes).astype(int)
    kept = np.arange(members.shape[1]) < drawn_sizes  # a smaller cluster fills fewer places
    units = members[clusters[..., None], np.where(kept, within, 0)]
    values = np.take_along_axis(per_unit, units.reshape(count, -1), axis=1).reshape(units.shape)
    return np.where(kept, values, 0.0).sum(axis=(1, 2)) / kept.sum(axis=(1, 2))


def paired_bootstrap(
    units: Sequence[PairedUnit],
    metric: Metric,
    draws: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    clusters: Sequence[Hashable] | None = None,
) -> Interval:
    """The paired, crossed bootstrap interval of ``metric(A) - metric(B)`` (module docstring);
    ``clusters``: one label per unit, for the two-stage resampling of the units."""
    if not units:
        raise ValueError("paired_bootstrap needs at least one unit")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    members = _cluster_members(clusters, len(units))
    rng = np.random.default_rng(seed)
    ones = [[np.ones((1, len(v))) for v in u.a] for u in units]
    point = float(
        np.mean([metric(u.a, w)[0] - metric(u.b, w)[0] for u, w in zip(units, ones, strict=True)])
    )
    ids, n_images = _image_ids(units)
    totals = []
    for start in range(0, draws, CHUNK):
        count = min(CHUNK, draws - start)
        counts = _counts(n_images, count, rng, ids)
        per_unit = np.stack(
            [
                metric(u.a, [counts[:, s] for s in strata])
                - metric(u.b, [counts[:, s] for s in strata])
                for u, strata in zip(units, ids, strict=True)
            ],
            axis=1,
        )  # [count, units]
        totals.append(_resampled_mean(per_unit, members, rng))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.concatenate(totals), [tail, 1.0 - tail])
    return Interval(point, float(low), float(high), level, len(units), draws)
