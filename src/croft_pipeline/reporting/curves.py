"""The curves behind the report's plots, as long tables (one row a point): the PNGs are drawn
from them, and the evaluate pipeline writes them as CSV for ``dvc plots`` (templates in
.dvc/plots)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from croft_pipeline.ood.evaluation import score_column


def scores_by_shift(
    sample_scores: pd.DataFrame, splits: Mapping[str, str], score: str
) -> dict[str, dict[str, np.ndarray]]:
    """``{method: {shift: scores}}`` (seeds pooled) for the shifts with samples."""
    column = score_column(score)
    by_method: dict[str, dict[str, np.ndarray]] = {}
    for method, group in sample_scores.groupby("method", sort=True):
        by_method[method] = {
            shift: group.loc[group["split"] == split, column].to_numpy()
            for shift, split in splits.items()
            if (group["split"] == split).any()
        }
    return by_method


def roc_table(by_method: Mapping[str, Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """ROC points (ID test positive vs open-set) of every method with both: method, fpr, tpr."""
    frames = []
    for method, shifts in by_method.items():
        if not {"id", "openset"} <= set(shifts):
            continue
        id_scores, ood_scores = shifts["id"], shifts["openset"]
        labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
        fpr, tpr, _ = roc_curve(labels, np.r_[id_scores, ood_scores])
        frames.append(pd.DataFrame({"method": method, "fpr": fpr, "tpr": tpr}))
    return pd.concat(frames, ignore_index=True) if frames else _empty("fpr", "tpr")


HISTOGRAM_BINS = 40  # bins of the score histograms (plots and the dvc plots table)


def histogram_edges(by_shift: Mapping[str, np.ndarray], bins: int) -> np.ndarray:
    """One set of bin edges for all of a method's shifts (their pooled range)."""
    pooled = np.concatenate([np.asarray(v, float) for v in by_shift.values()])
    return np.histogram_bin_edges(pooled, bins=bins)


def histogram_table(
    by_method: Mapping[str, Mapping[str, np.ndarray]], bins: int = HISTOGRAM_BINS
) -> pd.DataFrame:
    """Score densities per method and shift: method, shift, score (bin center), density."""
    frames = []
    for method, shifts in by_method.items():
        if not any(len(v) for v in shifts.values()):
            continue
        edges = histogram_edges(shifts, bins)
        centers = (edges[:-1] + edges[1:]) / 2
        for shift, values in shifts.items():
            density, _ = np.histogram(values, bins=edges, density=True)
            frames.append(
                pd.DataFrame(
                    {"method": method, "shift": shift, "score": centers, "density": density}
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else _empty("shift", "score", "density")


def _empty(*columns: str) -> pd.DataFrame:
    return pd.DataFrame(columns=["method", *columns])
