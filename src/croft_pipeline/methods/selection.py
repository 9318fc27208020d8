"""Fit one method per grid point and keep the one with the best ID-validation accuracy.

Selection reads the training and the ID validation sets only. ``probe`` (optional) is called on
every fitted point *after* its fit, to record numbers the selection never sees (the benchmark's
oracle: accuracy on the held-out domain, an upper bound no user could select).

The points that can train together (one batch signature) are fitted as one stack
(:mod:`croft_pipeline.methods.batched`), by the one training loop
(:func:`croft_pipeline.methods.trainer.fit_stack`); a stack gives the selection of the points'
single fits and, to float32 rounding, their weights.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
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
from croft_pipeline.methods.registry import build_method
from croft_pipeline.methods.trainer import Fit, TrainableMethod, fit_stack

logger = logging.getLogger(__name__)

Probe = Callable[[Method], dict[str, float]]


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


def fit_or_error(method: Method, train: TrainSet, val: EvalSet) -> Fit:
    """``method.fit``, or the error of a diverged fit."""
    try:
        return method.fit(train, val)
    except NonFiniteLossError as exc:
        return exc


def fit_points(methods: Sequence[Method], train: TrainSet, val: EvalSet) -> list[Fit]:
    """Each method's fit (in order): one stack per batch signature (a point alone is a stack of
    one), a method without a signature by its own ``fit``. Each fitted method ends with its
    best-epoch weights."""
    fits: list[Fit | None] = [None] * len(methods)
    stacks: dict[tuple, list[int]] = defaultdict(list)
    for i, method in enumerate(methods):
        signature = method.batch_signature() if isinstance(method, TrainableMethod) else None
        if signature is None:
            fits[i] = fit_or_error(method, train, val)
        else:
            stacks[signature].append(i)
    for members in stacks.values():
        stack = fit_stack([methods[i] for i in members], train, val)
        for i, fit in zip(members, stack, strict=True):
            fits[i] = fit
    return fits  # type: ignore[return-value]


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
) -> Selected:
    """Fit ``name`` at every grid point; keep the best ID-validation accuracy (first on ties).

    A grid point whose training diverges (:class:`NonFiniteLossError`) is recorded and skipped;
    if every point diverges, the last error is raised, saying that nothing was kept.
    """
    points = grid_points(grid)
    methods = [
        build_method(name, {**config, **point}, text_features, logit_scale, seed)
        for point in points
    ]
    fits = fit_points(methods, train, val)
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
            error.method,
            error.epoch,
            error.step,
            error.term,
            error.value,
            outcome=f"every grid point of seed {seed} diverged ({len(rows)} tried), so no weights "
            f"were kept and nothing is written: lower the lr in train.grids.{name}",
        ) from error
    if best is None:
        raise ValueError(f"{name}: empty grid")
    best.grid = rows
    return best
