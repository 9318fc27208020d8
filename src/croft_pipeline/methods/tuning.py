"""One fit job = one method and seed: its grid on ID validation, the probes, its WiSE-FT point.

Jobs are independent (their own seed, data and grid), so they run in worker processes when
``train.workers`` allows; a job returns plain data (weights, reports, numbers) and the driver
alone writes MLflow and the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from croft_pipeline.common.compute import torch_threads
from croft_pipeline.distributed.jobs import LOCAL, Runner, parallel_map
from croft_pipeline.methods.base import (
    METHODS,
    EvalSet,
    FitReport,
    TrainSet,
    accuracy,
)
from croft_pipeline.methods.fitted import zero_shot_model
from croft_pipeline.methods.params import CroftParams
from croft_pipeline.methods.selection import fit_selected
from croft_pipeline.methods.wise import choose_alpha, space_of


@dataclass(frozen=True)
class FitJob:
    name: str
    seed: int
    config: dict[str, Any]
    grid: dict[str, list[Any]]
    text_features: Tensor
    logit_scale: float
    train: TrainSet
    val: EvalSet
    probes: dict[str, EvalSet] = field(default_factory=dict)  # never used for selection
    wise_alphas: tuple[float, ...] = ()  # empty: no WiSE-FT point
    num_threads: int | str | None = 1


@dataclass
class FitOutcome:
    name: str
    seed: int
    config: dict[str, Any]
    report: FitReport
    state: dict[str, Tensor]
    grid: list[dict[str, Any]]
    zero_shot_val_accuracy: float
    seconds: float  # the whole job: every grid point, the probes, the WiSE-FT choice
    wise: dict[str, Any] | None = None  # alpha, space, validation accuracy per alpha

    def grid_rows(self) -> list[dict[str, Any]]:
        """The grid points tried, without their per-epoch histories and wall times (for files
        and tables: equal inputs give byte-equal files; wall times go to MLflow)."""
        return [{k: v for k, v in row.items() if k not in RUN_SPECIFIC} for row in self.grid]


RUN_SPECIFIC = ("history", "seconds")  # grid-row keys kept out of grid_rows


def run_fit(job: FitJob) -> FitOutcome:
    """Fit ``job.name`` at every grid point, keep the best on val, then choose its WiSE-FT α."""
    started = time.perf_counter()
    with torch_threads(job.num_threads):
        zero_shot = zero_shot_model(job.text_features, job.logit_scale, job.config["device"])
        zero_shot_val = accuracy(zero_shot.logits(job.val.features), job.val.labels)

        def probe(method) -> dict[str, float]:
            return {
                split: accuracy(method.logits(data.features), data.labels)
                for split, data in job.probes.items()
            }

        selected = fit_selected(
            job.name,
            job.config,
            job.grid,
            job.text_features,
            job.logit_scale,
            job.seed,
            job.train,
            job.val,
            probe if job.probes else None,
        )
        wise = None
        if job.wise_alphas:
            method = selected.method
            alpha, by_alpha = choose_alpha(
                method, zero_shot, job.val.features, job.val.labels, job.wise_alphas
            )
            wise = {"alpha": alpha, "space": space_of(method), "val_accuracy_by_alpha": by_alpha}
        return FitOutcome(
            name=job.name,
            seed=job.seed,
            config=selected.config,
            report=selected.report,
            state=selected.method.state_dict(),
            grid=selected.grid,
            zero_shot_val_accuracy=zero_shot_val,
            seconds=time.perf_counter() - started,
            wise=wise,
        )


def job_cost(job: FitJob) -> float:
    """A rough relative cost (grid points × epochs × images; CRoFT steps cost ~3x), to start
    the longest jobs first."""
    points = 1
    for values in job.grid.values():
        points *= max(1, len(values))
    epochs = float(job.config.get("epochs", 0))
    weight = 3.0 if issubclass(METHODS[job.name].params, CroftParams) else 1.0
    return points * epochs * len(job.train.labels) * weight


def fit_all(jobs: Sequence[FitJob], workers: int, runner: Runner = LOCAL) -> list[FitOutcome]:
    """Every job's outcome, in job order; in ``workers`` processes when there are several, or
    as ``runner``'s Ray tasks (the costliest jobs start first)."""
    order = sorted(range(len(jobs)), key=lambda i: -job_cost(jobs[i]))
    results = parallel_map(run_fit, [jobs[i] for i in order], workers, runner=runner)
    by_job = dict(zip(order, results, strict=True))
    return [by_job[i] for i in range(len(jobs))]
