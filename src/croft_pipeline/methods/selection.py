"""Fit one method per grid point and keep the one with the best ID-validation accuracy.

Selection reads the training and the ID validation sets only. ``probe`` (optional) is called on
every fitted point *after* its fit, to record numbers the selection never sees (the benchmark's
oracle: accuracy on the held-out domain, an upper bound no user could select).

``runner`` (``train.grid_runner``) says how the points are fitted: ``sequential``, one ``fit``
after another (the reference), or ``batched``, the points trained together as one stack
(:mod:`croft_pipeline.methods.batched`); both give the same selection and, to float32 rounding,
the same weights.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from croft_pipeline.methods.base import (
    EvalSet,
    FitReport,
    Method,
    NonFiniteLossError,
    TrainSet,
)
from croft_pipeline.methods.batched import fit_or_error, fit_points
from croft_pipeline.methods.params import GRID_RUNNER
from croft_pipeline.methods.registry import build_method

logger = logging.getLogger(__name__)

Probe = Callable[[Method], dict[str, float]]
DEFAULT_GRID_RUNNER = "batched"


@dataclass
class Selected:
    """The kept fit, its full configuration, and one row per grid point tried (with the point's
    per-epoch ``history``; ``probe`` numbers under ``probe``)."""

    method: Method
    config: dict[str, Any]
    report: FitReport
    grid: list[dict[str, Any]] = field(default_factory=list)


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid`` (sorted keys); ``[{}]`` for an empty grid."""
    keys = sorted(grid)
    return [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def varied_keys(grid: Mapping[str, Sequence[Any]]) -> list[str]:
    """The keys of ``grid`` with more than one value: what tells its points apart."""
    return [key for key in sorted(grid) if len(grid[key]) > 1]


def point_text(point: Mapping[str, Any]) -> str:
    """``lambda2=100, lr=0.01``: a grid point as a reader writes it (run names)."""
    return ", ".join(
        f"{key}={value:g}" if isinstance(value, float | int) else f"{key}={value}"
        for key, value in point.items()
    )


def fit_selected(
    name: str,
    config: Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    text_features: Tensor,
    logit_scale: float,
    seed: int,
    train: TrainSet,
    val: EvalSet,
    probe: Probe | None = None,
    runner: str = DEFAULT_GRID_RUNNER,
) -> Selected:
    """Fit ``name`` at every grid point; keep the best ID-validation accuracy (first on ties).

    A grid point whose training diverges (:class:`NonFiniteLossError`) is recorded and skipped;
    if every point diverges, the last error is raised, saying that nothing was kept.
    """
    GRID_RUNNER.check("train.grid_runner", runner)
    points = grid_points(grid)
    methods = [
        build_method(name, {**config, **point}, text_features, logit_scale, seed)
        for point in points
    ]
    if runner == "batched":
        fits = fit_points(methods, train, val)
    else:
        fits = [fit_or_error(method, train, val) for method in methods]
    best: Selected | None = None
    rows: list[dict[str, Any]] = []
    error: NonFiniteLossError | None = None
    for point, method, report in zip(points, methods, fits, strict=True):
        if isinstance(report, NonFiniteLossError):
            logger.warning("%s seed %d %s: %s; grid point skipped", name, seed, point, report)
            rows.append({"point": point, "error": str(report)})
            error = report
            continue
        rows.append(
            {
                "point": point,
                "val_accuracy": report.best_val_accuracy,
                "best_epoch": report.best_epoch,
                "seconds": round(report.seconds, 3),
                "history": report.history,
                "probe": probe(method) if probe else {},
            }
        )
        if best is None or report.best_val_accuracy > best.report.best_val_accuracy:
            best = Selected(method, {**config, **point}, report)
    if best is None and error is not None:
        raise NonFiniteLossError(
            error.method, error.epoch, error.step, error.term, error.value,
            outcome=f"every grid point of seed {seed} diverged ({len(rows)} tried), so no weights "
            f"were kept and nothing is written: lower the lr in train.grids.{name}",
        ) from error  # fmt: skip
    if best is None:
        raise ValueError(f"{name}: empty grid")
    best.grid = rows
    return best
