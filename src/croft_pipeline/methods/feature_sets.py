"""From the ``splits`` table and cached feature tables to the tensors methods train on, and
each method's configuration from the ``train`` parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from croft_pipeline.common.features import FeatureTable
from croft_pipeline.methods.base import METHODS, EvalSet, TrainSet


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


def config_layers(train_params: Mapping[str, Any], name: str) -> list[tuple[str, Mapping]]:
    """``(train parameter key, values)`` of each layer of a method's configuration, later wins:
    ``device``; ``common`` for trained methods; the shared block its class names
    (``config_group``, e.g. ``croft``); its own entry in ``method_params``."""
    if name not in METHODS:
        raise KeyError(f"train.methods names {name!r}; registered methods: {sorted(METHODS)}")
    cls = METHODS[name]
    layers: list[tuple[str, Mapping]] = [("train", {"device": train_params["device"]})]
    if cls.trains:
        layers.append(("train.common", train_params["common"]))
    if cls.config_group:
        layers.append((f"train.{cls.config_group}", train_params.get(cls.config_group) or {}))
    own = train_params.get("method_params", {}).get(name) or {}
    layers.append((f"train.method_params.{name}", own))
    return layers


def method_config(train_params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A method's full configuration (:func:`config_layers` merged). An environment that
    overrides one key of a layer changes every method built on it."""
    config: dict[str, Any] = {}
    for _, values in config_layers(train_params, name):
        config.update(values)
    return config


def config_key(train_params: Mapping[str, Any], name: str, key: str) -> str:
    """The full parameter key a method's configuration value ``key`` comes from."""
    prefix = next(
        (p for p, values in reversed(config_layers(train_params, name)) if key in values),
        f"train.method_params.{name}",
    )
    return f"{prefix}.{key}"
