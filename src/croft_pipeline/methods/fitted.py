"""Rebuild the fitted models a ``train_summary`` describes, from their stored weights.

An entry is a trained method (its own weights), or a WiSE-FT point of one (``base``, ``space``,
per-seed ``alpha``): in weight space it has its own interpolated weights of the base class; in
output space it blends the base method's logits with zero-shot CLIP at ``alpha``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from croft_pipeline.methods.base import build_method, partition_id, restore_method
from croft_pipeline.methods.wise import WEIGHT, Blend

Weights = Callable[[str], Mapping[str, Tensor]]  # partition id -> state dict


def zero_shot_model(text_features: Tensor, logit_scale: float, device: str = "cpu"):
    return build_method("zero_shot", {"device": device}, text_features, logit_scale)


def fitted_model(
    name: str,
    entry: Mapping[str, Any],
    seed: int,
    weights: Weights,
    text_features: Tensor,
    logit_scale: float,
):
    """The model of ``train_summary["methods"][name]`` at ``seed`` (``logits`` and ``embed``)."""
    run = entry["seeds"][str(seed)]
    base = entry.get("base")
    if base is None:
        return restore_method(
            name, run["config"], text_features, logit_scale, seed, weights(partition_id(name, seed))
        )
    if entry["space"] == WEIGHT:
        state = weights(partition_id(name, seed))
        return restore_method(base, run["config"], text_features, logit_scale, seed, state)
    fine_tuned = restore_method(
        base, run["config"], text_features, logit_scale, seed, weights(partition_id(base, seed))
    )
    zero_shot = zero_shot_model(text_features, logit_scale, run["config"]["device"])
    return Blend(fine_tuned, zero_shot, float(run["alpha"]))
