"""Paired differences between methods with bootstrap confidence intervals (``ood.intervals``).

A comparison is (method, baseline, shift, metric): the mean over units (seeds, or folds ×
seeds) of method − baseline on the same test samples, with its interval. Metrics: ``accuracy``
on the ID, covariate and novel-glyph parts; ``<score>_auroc`` of the ID test set against each
open-set part. Which pairs: every method against zero-shot (the verdict), each CRoFT variant
against ``croft_no_edr`` (does the energy term help?) and against the best baseline on that
metric (the highest mean among the non-CRoFT methods, chosen on these test results).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from croft_pipeline.ood.evaluation import EvaluationConfig, score_column, shift_frames
from croft_pipeline.ood.intervals import PairedUnit, auroc_metric, mean_metric, paired_bootstrap

COMPARISON_COLUMNS = [
    "method", "baseline", "role", "shift", "metric", "difference", "low", "high", "level",
    "units",
]  # fmt: skip
ZERO_SHOT, NO_EDR = "zero_shot", "croft_no_edr"


@dataclass(frozen=True)
class ComparisonConfig:
    score: str = "energy"  # the detection score compared
    draws: int = 2000
    level: float = 0.95
    seed: int = 0
    accuracy_shifts: tuple[str, ...] = ("id", "covariate", "covariate_novel")
    detection_shifts: tuple[str, ...] = ("openset", "openset_near", "openset_far")

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
    return method.startswith("croft_") and not method.startswith(NO_EDR)


def is_baseline(method: str) -> bool:
    """A method of the literature CRoFT is compared with (not zero-shot, not a CRoFT variant)."""
    return not method.startswith("croft_") and method != ZERO_SHOT


def unit_keys(samples: pd.DataFrame) -> list[str]:
    """The independent units: folds × seeds in a benchmark, seeds in one run."""
    return ["fold", "seed"] if "fold" in samples.columns else ["seed"]


def _strata(frames: dict[str, pd.DataFrame], shift: str, metric: str, column: str):
    """The per-sample arrays one metric needs, in sha256 order, or None if a part is missing."""
    if shift not in frames or (metric != "accuracy" and "id" not in frames):
        return None
    part = frames[shift].sort_values("sha256")
    if metric == "accuracy":
        return (part["correct"].to_numpy(float),), tuple(part["sha256"])
    ident = frames["id"].sort_values("sha256")
    strata = (ident[column].to_numpy(float), part[column].to_numpy(float))
    return strata, tuple(ident["sha256"]) + tuple(part["sha256"])


class UnitFrames:
    """Each (method, unit)'s samples by shift, computed once for all comparisons."""

    def __init__(self, samples: pd.DataFrame, config: EvaluationConfig):
        self.keys = unit_keys(samples)
        self.frames: dict[tuple, dict[str, pd.DataFrame]] = {}
        for key, part in samples.groupby(["method", *self.keys], sort=True):
            self.frames[key] = shift_frames(part, config)
        self.units = sorted({key[1:] for key in self.frames})

    def of(self, method: str, unit: tuple) -> dict[str, pd.DataFrame] | None:
        return self.frames.get((method, *unit))


def compare(
    frames: UnitFrames, method: str, baseline: str, shift: str, metric: str,
    comparison: ComparisonConfig,
) -> dict | None:  # fmt: skip
    """One row of the comparisons table, or None when a unit lacks the data."""
    column = score_column(comparison.score)
    units = []
    for unit in frames.units:
        ours, theirs = frames.of(method, unit), frames.of(baseline, unit)
        if ours is None or theirs is None:
            return None
        a, b = _strata(ours, shift, metric, column), _strata(theirs, shift, metric, column)
        if a is None or b is None:
            return None
        if a[1] != b[1]:
            raise ValueError(f"{method} and {baseline} were scored on different {shift} samples")
        units.append(PairedUnit(a[0], b[0]))
    if not units:
        return None
    statistic = mean_metric if metric == "accuracy" else auroc_metric
    interval = paired_bootstrap(
        units, statistic, comparison.draws, comparison.level, comparison.seed
    )
    return {"method": method, "baseline": baseline, "shift": shift, "metric": metric,
            **{k: v for k, v in interval.as_dict().items() if k != "draws"}}  # fmt: skip


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
        for method in methods:
            if method != ZERO_SHOT:
                pairs.append(("vs zero-shot", method, ZERO_SHOT, shift, metric))
            no_edr = NO_EDR + ("+wise" if method.endswith("+wise") else "")
            if is_croft(method) and no_edr in methods:
                pairs.append(("vs no EDR", method, no_edr, shift, metric))
            best = _best_baseline(summary, shift, metric)
            if is_croft(method) and best is not None:
                pairs.append(("vs best baseline", method, best, shift, metric))
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
            continue
        row = compare(frames, method, baseline, shift, metric, comparison)
        if row is not None:
            rows.append({**row, "role": role})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
