"""NegLabel (Jiang et al., ICLR 2024): negative labels mined from a vocabulary, and the grouped
score that measures how much softmax mass stays on the ID labels (docs/algorithm.md §10.5).

NegMining ranks each part of speech's candidates by the η-quantile of their cosine similarity to
the ID class embeddings, most distant (lowest) first; keeping a share ``s`` keeps the first
``int(n_pos · s)`` of each part, as the official code does. :func:`mining_shares` gives every
candidate the smallest share that keeps it, ``(rank + 1) / n_pos``, so one ordering by that share
serves every ``s``: the kept set is the rows whose share is at most ``s``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MINING_BATCH = 8192  # candidate rows per similarity matrix (memory only)


def mining_distances(candidates: Tensor, id_features: Tensor, quantile: float) -> Tensor:
    """``quantile``-quantile (linear interpolation) over the ID classes of each candidate's
    cosine similarity to them: ``[C]``, lower = farther from every ID class."""
    ids = F.normalize(id_features.double(), dim=1)
    parts = [
        torch.quantile(F.normalize(rows.double(), dim=1) @ ids.T, quantile, dim=1)
        for rows in candidates.split(MINING_BATCH)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def mining_shares(distances: Tensor, pos: list[str]) -> np.ndarray:
    """The smallest kept share at which each candidate is a negative label: ``(rank + 1) / n``
    within its part of speech, ranked by distance ascending (ties by position)."""
    values = distances.numpy()
    labels = np.asarray(pos)
    shares = np.empty(len(values), dtype=np.float64)
    for part in dict.fromkeys(pos):
        rows = np.flatnonzero(labels == part)
        order = rows[np.argsort(values[rows], kind="stable")]
        shares[order] = (np.arange(len(rows)) + 1) / len(rows)
    return shares


def kept_columns(shares: np.ndarray, share: float) -> np.ndarray:
    """Indices of the negative labels kept at ``share``: those mined at a share <= it (with a
    tolerance for the float rounding of ``(rank + 1) / n``)."""
    return np.flatnonzero(np.asarray(shares) <= share * (1 + 1e-12))


def grouped_id_mass(
    id_cosines: np.ndarray,
    negative_cosines: np.ndarray,
    groups: int,
    temperature: float,
    seed: int = 0,
) -> np.ndarray:
    """NegLabel's score: the softmax mass of the ID labels among ID ∪ one group of negative
    labels (cosines / temperature), averaged over ``groups`` groups.

    The negatives are permuted (``seed``) and split into ``groups`` equal groups; the remainder
    ``M mod groups`` is dropped, as in the official code. ``groups = 1`` is the ungrouped score.
    """
    ids = np.asarray(id_cosines, dtype=np.float64) / temperature
    negatives = np.asarray(negative_cosines, dtype=np.float64) / temperature
    size = negatives.shape[1] // groups
    if size == 0:
        raise ValueError(
            f"neglabel: {negatives.shape[1]} negative labels cannot fill {groups} groups"
        )
    order = torch.randperm(negatives.shape[1], generator=torch.Generator().manual_seed(seed))
    grouped = negatives[:, order.numpy()[: size * groups]].reshape(len(ids), groups, size)
    top = np.maximum(ids.max(axis=1), grouped.max(axis=(1, 2)))[:, None]
    id_mass = np.exp(ids - top).sum(axis=1)[:, None]
    negative_mass = np.exp(grouped - top[:, :, None]).sum(axis=2)
    return (id_mass / (id_mass + negative_mass)).mean(axis=1)


def mined_order(
    candidates: Tensor, id_features: Tensor, pos: list[str], quantile: float
) -> tuple[np.ndarray, np.ndarray]:
    """NegMining: the candidates' order by mining share (ascending, stable) and those shares."""
    shares = mining_shares(mining_distances(candidates, id_features, quantile), pos)
    order = np.argsort(shares, kind="stable")
    return order, shares[order]
