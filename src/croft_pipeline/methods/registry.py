"""Rebuilding a registered method by name (for refits, WiSE-FT and serving); importing this module
registers every method (:mod:`baselines`, :mod:`croft`) in :data:`~croft_pipeline.methods.base.METHODS`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from croft_pipeline.methods import baselines, croft  # noqa: F401  (registered on import)
from croft_pipeline.methods.base import METHODS, Method


def build_method(
    name: str,
    config: Mapping[str, Any],
    text_features: Tensor,
    logit_scale: float,
    seed: int = 0,
) -> Method:
    """A fresh, untrained method; :meth:`Method.load_state_dict` then restores trained weights."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; registered: {sorted(METHODS)}")
    return METHODS[name](config, text_features, logit_scale, seed)


def restore_method(
    name: str,
    config: Mapping[str, Any],
    text_features: Tensor,
    logit_scale: float,
    seed: int,
    state: Mapping[str, Tensor],
) -> Method:
    """A fitted method rebuilt from what a fit stored: its configuration and its state dict."""
    method = build_method(name, config, text_features, logit_scale, seed)
    method.load_state_dict(state)
    return method
