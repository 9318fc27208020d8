"""The deploy threshold: fixed per method and seed at a target TPR on ID validation data only.

The calibrated score is stored with its parameters (``{"score": "energy", "params": {...}}``),
so evaluation and serving compute exactly the score the threshold was set on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from croft_pipeline.config.rules import ParameterError
from croft_pipeline.ood.protocols import deploy_threshold
from croft_pipeline.ood.scores import compute_score, prediction_inputs, score_parameters

VAL_SPLIT = "val"  # the only split a threshold is ever fixed on


def calibrate_thresholds(
    predictions: pd.DataFrame,
    logit_scale: float,
    score: str,
    tpr: float,
    evaluated: Mapping[str, Mapping[str, Any]],
    bank_split: str,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{method: {seed: entry}}`` with the threshold keeping ``tpr`` of the ID validation rows.

    ``evaluated`` are the evaluated scores' parameters (``evaluate.scores``): the calibrated
    score must be one of them, so that evaluation applies the threshold to the same numbers.
    """
    check_calibrated_score(score, evaluated)
    score_params = score_parameters(score, evaluated[score])
    calibration: dict[str, dict[str, dict[str, Any]]] = {}
    for (method, seed), rows in predictions.groupby(["method", "seed"], sort=True):
        val = rows[rows["split"] == VAL_SPLIT]
        if val.empty:
            raise ValueError(f"calibration: no {VAL_SPLIT!r} predictions for {method}, seed {seed}")
        where = f"{VAL_SPLIT} predictions of {method}, seed {seed}"
        inputs = prediction_inputs(val, rows[rows["split"] == bank_split], logit_scale, where)
        scores = compute_score(score, inputs, **score_params)
        threshold = deploy_threshold(scores, tpr)
        calibration.setdefault(str(method), {})[str(seed)] = {
            "score": score,
            "params": score_params,
            "tpr": float(tpr),
            "threshold": threshold,
            "val_tpr": float(np.mean(scores >= threshold)),
            "n_val": int(len(scores)),
        }
    return calibration


def check_calibrated_score(score: str, evaluated: Mapping[str, Any]) -> None:
    """The calibrated score must be evaluated too, so evaluation applies the same numbers."""
    if score not in evaluated:
        raise ParameterError(
            "calibrate.score", f"be one of evaluate.scores {sorted(evaluated)}", score
        )


def calibrated_entry(calibration: Mapping[str, Any], method: str, seed) -> dict[str, Any] | None:
    """The calibration entry of one method and seed, or ``None`` when it was not calibrated."""
    entry = calibration.get(method, {}).get(str(int(seed)))
    return None if entry is None else dict(entry)
