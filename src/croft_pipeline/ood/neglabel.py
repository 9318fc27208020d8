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


def permutation(n: int, seed: int) -> np.ndarray:
    """The seeded order in which ``n`` kept negative labels are dealt into groups."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()


def negative_exps(
    negative_cosines: np.ndarray, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    """``exp(cos / T − top)`` of the negative labels and each row's ``top``, its largest
    ``cos / T``: the stabiliser every grid point of one row set shares. Float32 (each term is at
    most 1; those below float32's range are < e⁻⁸⁷ of the largest and vanish), computed by torch:
    the grid's cost is these exponentials."""
    z = torch.as_tensor(np.asarray(negative_cosines), dtype=torch.float32) / temperature
    top = z.max(dim=1).values if z.shape[1] else torch.zeros(len(z))
    return torch.exp(z - top[:, None]).numpy(), top.double().numpy()


def grouped_from_exps(
    id_cosines: np.ndarray, dealt: np.ndarray, top: np.ndarray, groups: int, temperature: float
) -> np.ndarray:
    """NegLabel's score from :func:`negative_exps` of the kept negatives, columns already in
    dealing order (:func:`permutation`): ``groups`` equal groups, the remainder dropped."""
    size = dealt.shape[1] // groups
    if size == 0:
        raise ValueError(f"neglabel: {dealt.shape[1]} negative labels cannot fill {groups} groups")
    ids = np.asarray(id_cosines, dtype=np.float64) / temperature
    # A head's logits over its scale need not be cosines (a linear probe's are not): the ID
    # terms may lie far above the negatives' ``top``, so both sides are shifted to the larger.
    shift = np.maximum(top, ids.max(axis=1, initial=-np.inf))
    id_mass = np.exp(ids - shift[:, None]).sum(axis=1)[:, None]
    negative_mass = (
        dealt[:, : size * groups].reshape(len(ids), groups, size).sum(axis=2, dtype=np.float64)
        * np.exp(top - shift)[:, None]
    )
    return (id_mass / (id_mass + negative_mass)).mean(axis=1)


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
    Every term is divided by ``exp`` of the row's largest ``cos / T``, so none overflows.
    """
    exps, top = negative_exps(negative_cosines, temperature)
    dealt = exps[:, permutation(exps.shape[1], seed)]
    return grouped_from_exps(id_cosines, dealt, top, groups, temperature)


def mined_order(
    candidates: Tensor, id_features: Tensor, pos: list[str], quantile: float
) -> tuple[np.ndarray, np.ndarray]:
    """NegMining: the candidates' order by mining share (ascending, stable) and those shares."""
    shares = mining_shares(mining_distances(candidates, id_features, quantile), pos)
    order = np.argsort(shares, kind="stable")
    return order, shares[order]
