"""Detection and classification metrics; ID is the positive class, higher score = more ID.

Implemented directly on numpy (tie-aware, same definitions as scikit-learn's ``roc_curve``,
``roc_auc_score`` and ``average_precision_score``); the tests compare against scikit-learn.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from croft_pipeline.config.rules import SHARE

TPR = SHARE  # a target true-positive rate: in (0, 1]
DETECTION_METRICS = ("fpr95", "auroc", "aupr_in", "aupr_out")  # what ood_metrics returns


def finite_scores(values, what: str) -> np.ndarray:
    """``values`` as a flat float64 array; empty or non-finite input is a ValueError naming ``what``."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain {int((~np.isfinite(array)).sum())} non-finite values")
    return array


def kept_count(n: int, tpr: float) -> int:
    """How many of ``n`` ID samples must stay above the threshold to reach ``tpr``."""
    TPR.check("tpr", tpr)
    return n - math.floor(n * (1.0 - tpr) + 1e-9)


def threshold_at_tpr(id_scores, tpr: float = 0.95) -> float:
    """The largest threshold ``t`` with ``mean(id_scores >= t) >= tpr``."""
    scores = np.sort(finite_scores(id_scores, "ID scores"))
    return float(scores[scores.size - kept_count(scores.size, tpr)])


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95) -> float:
    """Share of OOD samples at or above the threshold that keeps ``tpr`` of the ID samples."""
    threshold = threshold_at_tpr(id_scores, tpr)
    return float(np.mean(finite_scores(ood_scores, "OOD scores") >= threshold))


def auroc(id_scores, ood_scores) -> float:
    """Area under the ROC curve, ID positive (Mann-Whitney U with ties counted half)."""
    pos, neg = finite_scores(id_scores, "ID scores"), finite_scores(ood_scores, "OOD scores")
    ranks = rankdata(np.concatenate([pos, neg]))
    u_stat = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u_stat / (pos.size * neg.size))


def average_precision(positive_scores, negative_scores) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (ties grouped)."""
    pos = finite_scores(positive_scores, "positive scores")
    neg = finite_scores(negative_scores, "negative scores")
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="stable")
    scores, is_pos = scores[order], is_pos[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_pos = np.cumsum(is_pos)[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall_step = np.diff(np.r_[0.0, true_pos]) / pos.size
    return float(np.sum(recall_step * precision))


def aupr_in(id_scores, ood_scores) -> float:
    """Area under the precision-recall curve with ID as the positive class."""
    return average_precision(id_scores, ood_scores)


def aupr_out(id_scores, ood_scores) -> float:
    """Area under the precision-recall curve with OOD as the positive class (scores negated)."""
    return average_precision(-np.asarray(ood_scores, float), -np.asarray(id_scores, float))


def ood_metrics(id_scores, ood_scores, tpr: float = 0.95) -> dict[str, float]:
    """FPR at ``tpr`` TPR, AUROC, AUPR-In and AUPR-Out of one ID/OOD pair of score sets."""
    values = (
        fpr_at_tpr(id_scores, ood_scores, tpr),
        auroc(id_scores, ood_scores),
        aupr_in(id_scores, ood_scores),
        aupr_out(id_scores, ood_scores),
    )
    return dict(zip(DETECTION_METRICS, values, strict=True))


def accuracy(logits, labels) -> float:
    """Top-1 accuracy of ``argmax(logits)`` against integer ``labels``."""
    predicted = _predicted(logits)
    labels = np.asarray(labels).reshape(-1)
    if labels.size != predicted.size:
        raise ValueError(f"{predicted.size} predictions for {labels.size} labels")
    if labels.size == 0:
        raise ValueError("accuracy of an empty set")
    return float(np.mean(predicted == labels))


def _predicted(logits) -> np.ndarray:
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, K], got shape {logits.shape}")
    return logits.argmax(axis=1)
