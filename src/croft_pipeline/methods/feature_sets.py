"""From the ``splits`` table and cached feature tables to the tensors methods train on."""

from __future__ import annotations

import pandas as pd
import torch

from croft_pipeline.common.features import FeatureTable
from croft_pipeline.methods.base import EvalSet, TrainSet


def seed_rows(splits: pd.DataFrame, seed: int, split: str | None = None) -> pd.DataFrame:
    """The rows of one seed (and one split); an empty train or val split is an error."""
    rows = splits[splits["seed"] == seed]
    if split is not None:
        rows = rows[rows["split"] == split]
        if split in ("train", "val") and rows.empty:
            raise ValueError(
                f"splits: no {split!r} rows for seed {seed} (seeds present: {sorted(splits['seed'].unique())})"
            )
    return rows


def _labels(rows: pd.DataFrame) -> torch.Tensor:
    return torch.tensor(rows["label"].to_numpy(dtype="int64"))


def train_set(splits: pd.DataFrame, seed: int, views: FeatureTable) -> TrainSet:
    """The seed's ``train`` rows with all their cached augmented views ``[N, A, D]``."""
    rows = seed_rows(splits, seed, "train")
    return TrainSet(views.select(rows["sha256"].tolist()), _labels(rows))


def center_features(rows: pd.DataFrame, center: FeatureTable) -> torch.Tensor:
    """Center-view features ``[len(rows), D]`` of the rows, in row order."""
    return center.select(rows["sha256"].tolist())[:, 0]


def eval_set(splits: pd.DataFrame, seed: int, split: str, center: FeatureTable) -> EvalSet:
    rows = seed_rows(splits, seed, split)
    return EvalSet(center_features(rows, center), _labels(rows))


def class_text_features(
    text_features: FeatureTable, id_classes: list[str]
) -> tuple[torch.Tensor, float]:
    """Text features ``[K, D]`` in label order and the logit scale ``s`` from the table's meta."""
    if list(text_features.keys) != list(id_classes):
        raise ValueError(
            f"text_features keys {text_features.keys} are not the ID classes in label order {id_classes}"
        )
    if "logit_scale" not in text_features.meta:
        raise ValueError("text_features meta lacks 'logit_scale' (exp of CLIP's logit_scale)")
    return text_features.features[:, 0], float(text_features.meta["logit_scale"])
