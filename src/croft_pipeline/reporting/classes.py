"""Per-class views of an evaluation, from its per-sample table (``evaluation_scores``: ``method``,
``split``, ``label``, ``predicted``, ``correct``). Seeds are pooled: each (seed, image) is one
sample, so a matrix's diagonal over its total is the accuracy over every seed's test images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from croft_pipeline.reporting.tables import format_mean_std


def confusion_counts(
    sample_scores: pd.DataFrame, split: str, n_classes: int
) -> dict[str, np.ndarray]:
    """Per method, ``counts[true, predicted]`` on ``split`` (K × K integers)."""
    rows = sample_scores[sample_scores["split"] == split]
    matrices = {}
    for method, group in rows.groupby("method", sort=True):
        counts = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(counts, (group["label"].to_numpy(int), group["predicted"].to_numpy(int)), 1)
        matrices[str(method)] = counts
    return matrices


def class_accuracy(
    sample_scores: pd.DataFrame, id_split: str, covariate_split: str, classes: Sequence[str]
) -> pd.DataFrame:
    """Long: ``method``, ``class``, ``id``, ``covariate`` (accuracy), ``drop`` (id − covariate)."""
    rows = sample_scores[sample_scores["split"].isin([id_split, covariate_split])]
    accuracy = (
        rows.groupby(["method", "label", "split"])["correct"]
        .mean()
        .unstack("split")
        .reindex(columns=[id_split, covariate_split])
        .rename(columns={id_split: "id", covariate_split: "covariate"})
        .reset_index()
    )
    accuracy["class"] = [classes[label] for label in accuracy["label"]]
    accuracy["drop"] = accuracy["id"] - accuracy["covariate"]
    return accuracy[["method", "class", "id", "covariate", "drop"]]


def class_accuracy_table(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Class × (mean drop, each method's ``ID → covariate``), the largest mean drop first."""
    if accuracy.empty:
        return pd.DataFrame()
    cells = accuracy.assign(
        cell=[
            f"{_number(i)} → {_number(c)}"
            for i, c in zip(accuracy["id"], accuracy["covariate"], strict=True)
        ]
    )
    wide = cells.pivot(index="class", columns="method", values="cell").fillna("–")
    mean_drop = accuracy.groupby("class")["drop"].mean().reindex(wide.index)
    order = mean_drop.sort_values(ascending=False, na_position="last").index
    wide.insert(0, "mean drop", [_number(v) for v in mean_drop])
    return wide.loc[order]


def _number(value: float) -> str:
    return format_mean_std(float(value), 0.0, 1)
