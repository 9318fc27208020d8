"""The calibrate pipeline's node; the logic lives in :mod:`croft_pipeline.ood.calibration`."""

from __future__ import annotations

from typing import Any

import pandas as pd

from croft_pipeline.methods.train_summary import TrainSummary
from croft_pipeline.ood.calibration import calibrate_thresholds


def calibrate(
    predictions: pd.DataFrame,
    train_summary: TrainSummary,
    calibration: dict[str, Any],
    scores: dict[str, Any],
    knn_bank_split: str,
) -> dict[str, dict[str, dict[str, Any]]]:
    """The open-set threshold per method and seed, at ``calibrate.tpr`` on ID validation only, on
    the calibrated score (``calibrate.score``) with its ``evaluate.scores`` parameters."""
    return calibrate_thresholds(
        predictions,
        float(train_summary.logit_scale),
        calibration["score"],
        float(calibration["tpr"]),
        {name: dict(params or {}) for name, params in scores.items()},
        knn_bank_split,
    )
