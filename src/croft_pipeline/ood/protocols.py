"""The two open-set protocols of docs/algorithm.md §10: ``deploy`` and ``paper``."""

from __future__ import annotations

import numpy as np

from croft_pipeline.ood.metrics import auroc, finite_scores, threshold_at_tpr


def deploy_threshold(id_scores, tpr: float = 0.95) -> float:
    """The score threshold that keeps ``tpr`` of the ID validation samples (``score >= t``).

    ``calibrate`` calls this on ID validation data only, never on test data.
    """
    return threshold_at_tpr(id_scores, tpr)


def apply_threshold(scores, threshold: float) -> np.ndarray:
    """``True`` where a sample is accepted as in-distribution (``score >= threshold``)."""
    return np.asarray(scores, dtype=np.float64) >= threshold


def paper_protocol(reference_scores, reference_correct, ood_scores) -> dict[str, float]:
    """The official code's rule (docs/algorithm.md §10.3).

    Keep the correctly classified reference samples, threshold = 5th percentile of their scores
    (``np.percentile``, linear interpolation), FPR = share of open-set scores strictly above it,
    AUROC = correct reference (positive) vs open-set.
    """
    reference = finite_scores(reference_scores, "reference scores")
    correct = np.asarray(reference_correct, dtype=bool).reshape(-1)
    if correct.size != reference.size:
        raise ValueError(f"{correct.size} correctness flags for {reference.size} reference scores")
    if not correct.any():
        raise ValueError("paper protocol: no correctly classified reference sample")
    kept = reference[correct]
    oods = finite_scores(ood_scores, "OOD scores")
    threshold = float(np.percentile(kept, 5))
    return {
        "threshold": threshold,
        "fpr": float(np.mean(oods > threshold)),
        "auroc": auroc(kept, oods),
        "n_reference_correct": int(kept.size),
    }
