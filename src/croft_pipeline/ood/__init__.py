"""OOD scores and metrics with one convention: higher score = more in-distribution.

Every FPR key names its positive class (``fpr95_id_positive``, ``fpr95_ood_positive``). Two
protocols (docs/algorithm.md §10): ``paper`` (threshold from correctly classified reference
samples) and ``deploy`` (threshold fixed on ID validation
data by :func:`deploy_threshold`, then applied unchanged to every test set).

Lazy (PEP 562): ``croft_pipeline.ood.params`` imports without torch.
"""

_HOMES = {
    **dict.fromkeys(
        (
            "accuracy",
            "aupr_in",
            "aupr_out",
            "auroc",
            "average_precision",
            "fpr_at_tpr",
            "ood_metrics",
        ),
        "metrics",
    ),
    **dict.fromkeys(("apply_threshold", "deploy_threshold", "paper_protocol"), "protocols"),
    **dict.fromkeys(("SCORES", "ScoreInputs", "compute_score", "score_names"), "scores"),
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from croft_pipeline.ood import metrics, protocols, scores

    homes = {"metrics": metrics, "protocols": protocols, "scores": scores}
    return getattr(homes[_HOMES[name]], name)
