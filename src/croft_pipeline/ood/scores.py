"""A registry of OOD scores; every score is higher for more in-distribution samples.

Each score is ``fn(inputs: ScoreInputs, **params) -> np.ndarray [N]`` (float64).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from croft_pipeline.config.rules import POSITIVE, SHARE, ParameterError, at_least
from croft_pipeline.ood.neglabel import (
    grouped_from_exps,
    kept_columns,
    negative_exps,
    permutation,
)

# the allowed values of every score parameter (by name; the same name means the same rule)
PARAMETER_RULES = {
    "temperature": POSITIVE,
    "k": at_least(1),
    "share": SHARE,
    "groups": at_least(1),
    "seed": at_least(0),
}


@dataclass(frozen=True)
class Negatives:
    """A model's logits ``[N, M]`` for the mined negative labels (through its own text side, as
    its ID class names) and each label's mining share ``[M]`` (:mod:`croft_pipeline.ood.neglabel`).

    :meth:`dealt` keeps the exponentials every grid point of these rows shares (memory only).
    """

    logits: np.ndarray
    shares: np.ndarray
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def dealt(self, scale: float, temperature: float, share: float, seed: int):
        """``(exps in dealing order, top)`` of the labels kept at ``share`` (neglabel's inputs)."""
        key = (scale, temperature, share, seed)
        if key not in self._memo:
            if (scale, temperature) not in self._memo:
                cosines = np.asarray(self.logits, dtype=np.float32) / np.float32(scale)
                self._memo[(scale, temperature)] = negative_exps(cosines, temperature)
            exps, top = self._memo[(scale, temperature)]
            columns = kept_columns(self.shares, share)
            order = torch.as_tensor(columns[permutation(len(columns), seed)])
            self._memo[key] = (torch.from_numpy(exps).index_select(1, order).numpy(), top)
        return self._memo[key]


@dataclass(frozen=True)
class ScoreInputs:
    """What a score may look at, for N samples.

    ``logits`` ``[N, K]`` include the model's logit scale (``logit_scale * cos`` for CLIP-style
    heads); ``embeddings`` ``[N, D]`` are the method's adapted image features and ``bank``
    ``[M, D]`` the ID training features (both only needed by KNN); ``negatives`` the logits of
    the negative labels (only needed by NegLabel).
    """

    logits: np.ndarray
    logit_scale: float = 1.0
    embeddings: np.ndarray | None = None
    bank: np.ndarray | None = None
    negatives: Negatives | None = None

    def subset(self, rows: np.ndarray) -> ScoreInputs:
        """The same inputs for ``rows`` only (the KNN bank unchanged)."""
        negatives = self.negatives
        if negatives is not None:
            negatives = Negatives(np.asarray(negatives.logits)[rows], negatives.shares)
        embeddings = None if self.embeddings is None else np.asarray(self.embeddings)[rows]
        return ScoreInputs(
            np.asarray(self.logits)[rows], self.logit_scale, embeddings, self.bank, negatives
        )

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits)
        if logits.ndim != 2 or logits.shape[1] == 0:
            raise ValueError(f"logits must be [N, K] with K >= 1, got shape {logits.shape}")
        if not np.isfinite(logits).all():
            raise ValueError("logits contain non-finite values")
        if not (np.isfinite(self.logit_scale) and self.logit_scale > 0):
            raise ValueError(
                f"logit_scale must be a positive finite number, got {self.logit_scale}"
            )


def _logits(inputs: ScoreInputs) -> torch.Tensor:
    return torch.as_tensor(np.asarray(inputs.logits), dtype=torch.float64)


def energy(inputs: ScoreInputs, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy ``T * logsumexp(logits / T)`` (docs/algorithm.md §2.4 with T = 1)."""
    _check_positive("temperature", temperature)
    return (temperature * torch.logsumexp(_logits(inputs) / temperature, dim=1)).numpy()


def max_softmax(inputs: ScoreInputs, temperature: float = 1.0) -> np.ndarray:
    """Maximum softmax probability (MSP) of ``logits / T``."""
    _check_positive("temperature", temperature)
    return torch.softmax(_logits(inputs) / temperature, dim=1).max(dim=1).values.numpy()


def max_logit(inputs: ScoreInputs) -> np.ndarray:
    """Largest logit."""
    return _logits(inputs).max(dim=1).values.numpy()


def mcm(inputs: ScoreInputs, temperature: float = 1.0) -> np.ndarray:
    """MCM: max softmax of the cosine similarities ``logits / logit_scale`` divided by ``T``."""
    _check_positive("temperature", temperature)
    cosine = _logits(inputs) / inputs.logit_scale
    return torch.softmax(cosine / temperature, dim=1).max(dim=1).values.numpy()


KNN_BATCH = 1024  # query rows per distance matrix (memory only: the scores do not depend on it)
KNN_CANDIDATES = 16  # neighbours beyond k whose distances are recomputed exactly


def knn(inputs: ScoreInputs, k: int = 1) -> np.ndarray:
    """Negative L2 distance to the k-th nearest ID bank feature (both sides L2-normalized).

    The official script negates the squared distance: same ranking, same threshold-free metrics.
    The neighbours are found by the matrix-product distance, whose last bits depend on how many
    queries share the product; their distances are then recomputed pair by pair, so a row's
    score does not depend on the rows beside it (the served model scores a few at a time).
    """
    if inputs.embeddings is None or inputs.bank is None:
        raise ValueError("the knn score needs embeddings and an ID feature bank")
    queries = _normalize(inputs.embeddings, "embeddings")
    bank = _normalize(inputs.bank, "bank")
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(f"embedding dim {queries.shape[1]} != bank dim {bank.shape[1]}")
    if queries.shape[0] != np.asarray(inputs.logits).shape[0]:
        raise ValueError("embeddings and logits have a different number of rows")
    check_knn_k(k, bank.shape[0])
    candidates = min(k + KNN_CANDIDATES, bank.shape[0])
    kth = []
    for start in range(0, queries.shape[0], KNN_BATCH):
        batch = queries[start : start + KNN_BATCH]
        nearest = torch.cdist(batch, bank).topk(candidates, dim=1, largest=False).indices
        exact = (bank[nearest] - batch[:, None]).square().sum(dim=2).sqrt()
        kth.append(exact.sort(dim=1).values[:, k - 1])
    return (-torch.cat(kth)).numpy() if kth else np.zeros(0)


def neglabel(
    inputs: ScoreInputs,
    share: float = 0.15,
    groups: int = 100,
    temperature: float = 0.01,
    seed: int = 0,
) -> np.ndarray:
    """NegLabel: the softmax mass on the ID labels against ``groups`` random groups of the
    negative labels kept at ``share`` (cosines = logits / logit_scale, divided by ``T``).

    The paper's defaults: 15 % of each part of speech kept, 100 groups, T = 0.01.
    """
    for name, value in (("share", share), ("groups", groups), ("temperature", temperature)):
        PARAMETER_RULES[name].check(name, value)
    if inputs.negatives is None:
        raise ValueError("the neglabel score needs the negative labels' logits")
    negatives = np.asarray(inputs.negatives.logits)
    if negatives.shape[0] != np.asarray(inputs.logits).shape[0]:
        raise ValueError("negative-label logits and logits have a different number of rows")
    scale = inputs.logit_scale
    dealt, top = inputs.negatives.dealt(scale, temperature, share, seed)
    return grouped_from_exps(np.asarray(inputs.logits) / scale, dealt, top, groups, temperature)


SCORES: dict[str, Callable[..., np.ndarray]] = {
    "energy": energy,
    "msp": max_softmax,
    "max_logit": max_logit,
    "mcm": mcm,
    "knn": knn,
    "neglabel": neglabel,
}


NEGATIVE_SCORES = frozenset({"neglabel"})  # the scores that need ScoreInputs.negatives


def score_names() -> list[str]:
    return sorted(SCORES)


def stacked(column, what: str) -> np.ndarray:
    """A column of equal-length vectors (a predictions table's ``logits`` or ``embedding``) as
    ``[N, L]`` float64; ragged or non-finite rows are a ValueError naming ``what``."""
    lengths = {len(row) for row in column}
    if len(lengths) > 1:
        raise ValueError(f"{what}: rows of different lengths {sorted(lengths)}")
    array = np.asarray(np.stack(list(column)), dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: non-finite values")
    return array


def prediction_inputs(
    rows: pd.DataFrame, bank_rows: pd.DataFrame | None, logit_scale: float, where: str
) -> ScoreInputs:
    """:class:`ScoreInputs` of predictions-table rows (``logits``, ``embedding``), with the
    ``embedding`` of ``bank_rows`` as the KNN bank; the one place they are built from a table."""
    has_bank = bank_rows is not None and len(bank_rows) > 0
    return ScoreInputs(
        logits=stacked(rows["logits"], f"logits in {where}"),
        logit_scale=logit_scale,
        embeddings=stacked(rows["embedding"], f"embeddings in {where}"),
        bank=stacked(bank_rows["embedding"], f"bank embeddings in {where}") if has_bank else None,
    )


def compute_score(name: str, inputs: ScoreInputs, **params) -> np.ndarray:
    """The score ``name`` of every sample (higher = more in-distribution)."""
    resolved = score_parameters(name, params)
    return np.asarray(SCORES[name](inputs, **resolved), dtype=np.float64)


def score_parameters(name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every parameter of score ``name``: the given ones over its defaults (``{}`` and
    ``{"temperature": 1.0}`` are the same energy). An unknown score or parameter is an error."""
    if name not in SCORES:
        raise KeyError(f"unknown OOD score {name!r}; known: {score_names()}")
    accepted = {
        key: parameter.default
        for key, parameter in inspect.signature(SCORES[name]).parameters.items()
        if key != "inputs"
    }
    unknown = sorted(set(params or {}) - set(accepted))
    if unknown:
        raise ValueError(
            f"score {name!r} has no parameter(s) {unknown}; it takes {sorted(accepted)}"
        )
    return {**accepted, **dict(params or {})}


def _normalize(features: np.ndarray, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    if tensor.ndim != 2:
        raise ValueError(f"{what} must be [N, D], got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{what} contain non-finite values")
    return tensor / tensor.norm(dim=1, keepdim=True).clamp_min(1e-10)


def check_knn_k(k: int, bank_size: int, key: str = "k") -> None:
    """KNN needs ``1 <= k <= bank_size`` (the ID feature bank's rows)."""
    PARAMETER_RULES["k"].check(key, k)
    if k > bank_size:
        raise ParameterError(key, f"be <= the KNN bank size ({bank_size} ID feature rows)", k)


def _check_positive(name: str, value: float) -> None:
    PARAMETER_RULES[name].check(name, value)
