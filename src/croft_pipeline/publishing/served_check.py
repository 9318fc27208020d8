"""Before a version exists: the logged model, loaded back from the tracking store, must predict
what evaluation scored on a sample of the evaluated rows (exactly, on the CPU).

It is loaded in this process (``serving.pyfunc.load_in_process``: the logged config, weights, text
features, KNN bank and threshold; the code already imported), so it checks what was logged, not
whether the bundled ``code/`` stands alone (``tests/serving/test_standalone.py`` does).
``is_unknown`` is expected at the calibration's threshold, so it checks the bundled threshold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from croft_pipeline.common.features import FeatureTable
from croft_pipeline.ood import apply_threshold
from croft_pipeline.ood.evaluation import score_column
from croft_pipeline.serving.pyfunc import load_in_process

SAMPLE_ROWS = 64  # evaluated rows predicted by the logged model before it is registered


class ServedModelMismatch(RuntimeError):
    """The model about to be registered does not predict what evaluation scored."""


def served_sample(
    scores: pd.DataFrame,
    image_features_center: FeatureTable,
    method: str,
    seed: int,
    calibrated: Mapping[str, Any],
    rows: int = SAMPLE_ROWS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(model input, expected output) for up to ``rows`` evaluated rows of ``method`` at ``seed``
    (spread evenly over its rows sorted by split and image): each row's center-view CLIP
    embedding, and the label, scores and ``is_unknown`` (at the ``calibrated`` score and
    threshold) evaluation gave it."""
    mine = scores[(scores["method"] == method) & (scores["seed"] == seed)]
    if mine.empty:
        raise ValueError(f"evaluation_scores has no rows of {method} seed {seed} to check against")
    mine = mine.sort_values(["split", "sha256"], kind="stable").reset_index(drop=True)
    picked = mine.iloc[np.unique(np.linspace(0, len(mine) - 1, min(rows, len(mine))).round())]
    features = image_features_center.select(list(picked["sha256"]))[:, 0].double().numpy()
    model_input = pd.DataFrame({"embedding": [row.tolist() for row in features]})
    score = picked[score_column(calibrated["score"])].to_numpy()
    expected = {"label": picked["predicted"].to_numpy(), "score": score}
    for name in ("energy", "knn"):
        if score_column(name) in picked.columns:
            expected[name] = picked[score_column(name)].to_numpy()
    expected["is_unknown"] = ~apply_threshold(score, float(calibrated["threshold"]))
    return model_input, pd.DataFrame(expected)


def check_served(model_uri: str, model_input: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Load ``model_uri`` in this process and compare its predictions with
    ``expected``, column by column and bit for bit; a difference is a :class:`ServedModelMismatch`."""
    predicted = load_in_process(model_uri).predict(model_input)
    differing = {
        column: int(np.sum(predicted[column].to_numpy() != expected[column].to_numpy()))
        for column in expected.columns
        if column in predicted.columns
    }
    missing = [column for column in expected.columns if column not in predicted.columns]
    if missing or any(differing.values()):
        raise ServedModelMismatch(
            f"the model logged at {model_uri}, loaded as served, does not predict what evaluation "
            f"scored on {len(expected)} sampled rows (rows differing by column: {differing}; "
            f"columns missing: {missing}): it is not registered"
        )
