"""Reductions that keep a leading grid-point axis, so each method's math is written once.

The methods' math is written for ``[rows, cols]`` matrices and also runs unchanged on stacks
``[G, rows, cols]`` of G grid points (:mod:`croft_pipeline.methods.batched`): products use
``.mT``, and a per-point scalar (a loss term, a per-point hyper-parameter) is a 0-d tensor or a
float for one point and ``[G, 1, 1]`` on a stack, so it broadcasts against the stack's matrices.
On one point every function here is the plain call (``t.sum()``, ``F.cross_entropy``), so the
sequential path computes exactly what it did before stacks existed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def is_stacked(t: Tensor) -> bool:
    return t.ndim > 2


def matrix_sum(t: Tensor) -> Tensor:
    """Sum of each matrix: a 0-d tensor for ``[R, C]``, ``[G, 1, 1]`` for ``[G, R, C]``."""
    return t.sum(dim=(-2, -1), keepdim=True) if is_stacked(t) else t.sum()


def matrix_mean(t: Tensor) -> Tensor:
    """Mean of each matrix (shapes as :func:`matrix_sum`)."""
    return t.mean(dim=(-2, -1), keepdim=True) if is_stacked(t) else t.mean()


def matrix_numel(t: Tensor) -> int:
    """Entries of one matrix of ``t`` (one point's, on a stack)."""
    return t.shape[-2] * t.shape[-1]


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of ``[B, K]`` logits, or per point of ``[G, B, K]`` (``[G, 1, 1]``)."""
    if not is_stacked(logits):
        return F.cross_entropy(logits, labels)
    rows = F.cross_entropy(
        logits.flatten(0, -2), labels.expand(logits.shape[:-1]).flatten(), reduction="none"
    )
    return matrix_mean(rows.view(*logits.shape[:-1], 1))


def backward(loss: Tensor, retain_graph: bool = False) -> None:
    """Backpropagate a loss, or a stack of independent per-point losses (their sum: the points
    share no parameter, so each point's gradient is its own loss's)."""
    loss.backward(torch.ones_like(loss), retain_graph=retain_graph)
