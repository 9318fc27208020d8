"""Paired differences between methods with bootstrap confidence intervals (``ood.intervals``).

A comparison is (method, baseline, shift, metric): the mean over units (seeds, folds × seeds,
or backbones × folds × seeds) of method − baseline on the same test samples, with its interval;
with several backbones (the pretraining seed of the CLIP), the units are resampled per backbone
(``paired_bootstrap``'s clusters), since every fold and seed on one backbone shares it. Metrics: ``accuracy``
on the ID, covariate and novel-glyph parts; ``<score>_auroc`` of the ID test set against each
open-set part. Which pairs (``role``):
- ``vs zero-shot``: every method (the verdict);
- ``vs no EDR``: each CRoFT variant against ``croft_no_edr`` (does the energy term help?);
- ``vs best baseline``: each CRoFT variant against the best non-CRoFT method on that metric
  (the highest mean, chosen on these test results);
- ``wise vs fine-tuned``: each ``<method>+wise`` against its fine-tuned ``<method>``;
- ``gate``: whatever an interval gate of ``evaluate.gates`` needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from croft_pipeline.methods.wise import is_wise, wise_base, wise_name
from croft_pipeline.ood.evaluation import (
    ACCURACY_SHIFTS,
    DETECTION_REFERENCE,
    DETECTION_SHIFTS,
    EvaluationConfig,
    score_column,
    shift_frames,
)
from croft_pipeline.ood.intervals import PairedUnit, auroc_metric, mean_metric, paired_bootstrap
from croft_pipeline.ood.params import ComparisonsParams

logger = logging.getLogger(__name__)

COMPARISON_COLUMNS = [
    "method",
    "baseline",
    "role",
    "shift",
    "metric",
    "difference",
    "low",
    "high",
    "level",
    "units",
]
ZERO_SHOT, NO_EDR = "zero_shot", "croft_no_edr"
DEFAULTS = ComparisonsParams()  # the defaults of evaluate.comparisons


@dataclass(frozen=True)
class ComparisonConfig:
    score: str = DEFAULTS.score  # the detection score compared
    draws: int = DEFAULTS.draws
    level: float = DEFAULTS.level
    seed: int = DEFAULTS.seed
    accuracy_shifts: tuple[str, ...] = ACCURACY_SHIFTS
    detection_shifts: tuple[str, ...] = DETECTION_SHIFTS

    @classmethod
    def from_params(cls, params: dict | None) -> ComparisonConfig:
        params = dict(params or {})
        for key in ("accuracy_shifts", "detection_shifts"):
            if key in params:
                params[key] = tuple(params[key])
        return cls(**params)

    def metrics(self) -> list[tuple[str, str]]:
        return [(shift, "accuracy") for shift in self.accuracy_shifts] + [
            (shift, f"{self.score}_auroc") for shift in self.detection_shifts
        ]


def is_croft(method: str) -> bool:
    """A CRoFT variant with the energy term (``croft_no_edr`` is its ablation)."""
    base = wise_base(method)
    return base.startswith("croft_") and base != NO_EDR


def is_baseline(method: str) -> bool:
    """A method of the literature CRoFT is compared with (not zero-shot, not a CRoFT variant)."""
    return not wise_base(method).startswith("croft_") and method != ZERO_SHOT


CLUSTER_KEY = "backbone"  # units sharing it share a random factor: resampled together


def unit_keys(samples: pd.DataFrame) -> list[str]:
    """The units: (backbones ×) folds × seeds in a benchmark, seeds in one run."""
    keys = ["fold", "seed"] if "fold" in samples.columns else ["seed"]
    return [CLUSTER_KEY, *keys] if CLUSTER_KEY in samples.columns else keys


def _ordered(frame: pd.DataFrame, shift: str) -> pd.DataFrame:
    """A shift's samples in sha256 order; one row per image (else the pairing is ambiguous)."""
    if frame["sha256"].duplicated().any():
        raise ValueError(f"{shift}: an image is scored twice in one method and unit")
    return frame.sort_values("sha256", kind="stable")


def _strata(frames: dict[str, pd.DataFrame], shift: str, metric: str, column: str):
    """(values per stratum, sha256 keys per stratum) of one metric, or None if a part is missing."""
    reference = DETECTION_REFERENCE.get(shift, "id")
    if shift not in frames or (metric != "accuracy" and reference not in frames):
        return None
    part = _ordered(frames[shift], shift)
    if metric == "accuracy":
        return (part["correct"].to_numpy(float),), (part["sha256"].to_numpy(),)
    ident = _ordered(frames[reference], reference)
    values = (ident[column].to_numpy(float), part[column].to_numpy(float))
    return values, (ident["sha256"].to_numpy(), part["sha256"].to_numpy())


class UnitFrames:
    """Each (method, unit)'s samples by shift, computed once for all comparisons."""

    def __init__(self, samples: pd.DataFrame, config: EvaluationConfig):
        self.keys = unit_keys(samples)
        self.frames: dict[tuple, dict[str, pd.DataFrame]] = {}
        for key, part in samples.groupby(["method", *self.keys], sort=True):
            self.frames[key] = shift_frames(part, config)
        self.units = sorted({key[1:] for key in self.frames})

    def clusters(self) -> list | None:
        """Each unit's backbone (``paired_bootstrap``'s clusters), or None without backbones."""
        if CLUSTER_KEY not in self.keys:
            return None
        return [unit[self.keys.index(CLUSTER_KEY)] for unit in self.units]

    def of(self, method: str, unit: tuple) -> dict[str, pd.DataFrame] | None:
        return self.frames.get((method, *unit))


def compare(
    frames: UnitFrames,
    method: str,
    baseline: str,
    shift: str,
    metric: str,
    comparison: ComparisonConfig,
) -> dict | None:
    """One row of the comparisons table; None when no unit has the data (e.g. no near/far
    classes configured), and None with a warning when only some units have it."""
    column = score_column(comparison.score)
    interval = _paired(frames, (method, column), (baseline, column), shift, metric, comparison)
    if interval is None:
        return None
    return {"method": method, "baseline": baseline, "shift": shift, "metric": metric, **interval}


def _paired(
    frames: UnitFrames,
    ours: tuple[str, str],
    theirs: tuple[str, str],
    shift: str,
    metric: str,
    comparison: ComparisonConfig,
) -> dict | None:
    """The paired interval of (method, score column) ``ours`` − ``theirs`` on one shift."""
    units, missing = [], []
    for unit in frames.units:
        mine, other = frames.of(ours[0], unit), frames.of(theirs[0], unit)
        a = None if mine is None else _strata(mine, shift, metric, ours[1])
        b = None if other is None else _strata(other, shift, metric, theirs[1])
        if a is None or b is None:
            missing.append(unit)
            continue
        if any(len(x) != len(y) or (x != y).any() for x, y in zip(a[1], b[1], strict=True)):
            raise ValueError(f"{ours[0]} and {theirs[0]} were scored on different {shift} samples")
        units.append(PairedUnit(a[0], b[0], a[1]))
    if missing and units:
        logger.warning(
            "no %s/%s interval for %s vs %s: units %s lack it", shift, metric, ours, theirs, missing
        )
    if missing or not units:
        return None
    statistic = mean_metric if metric == "accuracy" else auroc_metric
    interval = paired_bootstrap(
        units, statistic, comparison.draws, comparison.level, comparison.seed, frames.clusters()
    )
    return {k: v for k, v in interval.as_dict().items() if k != "draws"}


def compare_scores(
    samples: pd.DataFrame,
    config: EvaluationConfig,
    comparison: ComparisonConfig,
    pairs: Iterable[tuple[str, str]],
    shifts: Sequence[str] = DETECTION_SHIFTS,
) -> pd.DataFrame:
    """Per method, the paired AUROC difference of two of its scores on the same samples, with
    its interval: comparisons rows (COMPARISON_COLUMNS) with role ``"<score> vs <baseline>"``,
    the method as its own baseline and metric ``auroc``; e.g. NegLabel against energy."""
    frames = UnitFrames(samples, config)
    rows = []
    for method in sorted(samples["method"].unique()):
        for score, baseline in pairs:
            for shift in shifts:
                interval = _paired(
                    frames,
                    (method, score_column(score)),
                    (method, score_column(baseline)),
                    shift,
                    "auroc",
                    comparison,
                )
                if interval is not None:
                    rows.append(
                        {
                            "method": method,
                            "baseline": method,
                            "role": score_role(score, baseline),
                            "shift": shift,
                            "metric": "auroc",
                            **interval,
                        }
                    )
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def score_role(score: str, baseline: str) -> str:
    return f"{score} vs {baseline}"


def _best_baseline(summary_means: pd.DataFrame, shift: str, metric: str) -> str | None:
    rows = summary_means[
        (summary_means["shift"] == shift)
        & (summary_means["metric"] == metric)
        & summary_means["method"].map(is_baseline)
    ]
    return None if rows.empty else str(rows.sort_values("mean").iloc[-1]["method"])


def planned_pairs(
    methods: Sequence[str],
    summary: pd.DataFrame,
    metrics: Iterable[tuple[str, str]],
    extra: Iterable[tuple[str, str]] = (),
) -> list[tuple[str, str, str, str, str]]:
    """``(role, method, baseline, shift, metric)`` of every comparison to compute."""
    pairs = []
    for shift, metric in metrics:
        best = _best_baseline(summary, shift, metric)
        for method in methods:
            if method != ZERO_SHOT:
                pairs.append(("vs zero-shot", method, ZERO_SHOT, shift, metric))
            no_edr = wise_name(NO_EDR) if is_wise(method) else NO_EDR
            if is_croft(method) and no_edr in methods:
                pairs.append(("vs no EDR", method, no_edr, shift, metric))
            if is_croft(method) and best is not None:
                pairs.append(("vs best baseline", method, best, shift, metric))
            if is_wise(method) and wise_base(method) in methods:
                pairs.append(("wise vs fine-tuned", method, wise_base(method), shift, metric))
        for method, baseline in extra:
            pairs.append(("gate", method, baseline, shift, metric))
    unique: dict[tuple, tuple] = {}
    for pair in pairs:
        unique.setdefault(pair[1:], pair)
    return list(unique.values())


def compare_methods(
    samples: pd.DataFrame,
    summary: pd.DataFrame,
    config: EvaluationConfig,
    comparison: ComparisonConfig,
    extra_pairs: Iterable[tuple[str, str]] = (),
) -> pd.DataFrame:
    """The comparisons table (COMPARISON_COLUMNS) of every planned pair."""
    methods = sorted(samples["method"].unique())
    frames = UnitFrames(samples, config)
    rows = []
    for role, method, baseline, shift, metric in planned_pairs(
        methods, summary, comparison.metrics(), extra_pairs
    ):
        if baseline not in methods or method not in methods:
            logger.warning(
                "no comparison of %s with %s: one of them was not evaluated", method, baseline
            )
            continue
        row = compare(frames, method, baseline, shift, metric, comparison)
        if row is not None:
            rows.append({**row, "role": role})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
