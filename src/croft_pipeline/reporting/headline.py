"""The few numbers a user compares across experiments (``headline.json``, the evaluate stage's
DVC metrics; ``metrics.json`` holds every metric): the registered method's and each gate
baseline's headline metrics, and the quality gates' figures. Kedro-free."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from croft_pipeline.ood.evaluation import put_finite
from croft_pipeline.publishing.gates import check_gates, gate_result, interval_row

# (shift, metric) of every compared method; {score}: the detection score the comparisons use;
# deploy_*: what its calibrated threshold accepts (a new calibrate.tpr moves only these)
HEADLINE = (
    ("id", "accuracy"),
    ("covariate", "accuracy"),
    ("openset", "{score}_auroc"),
    ("openset", "{score}_fpr95_id_positive"),
    ("id", "deploy_tpr"),
    ("openset", "deploy_fpr"),
)


def headline_metrics(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    gates: Mapping[str, Any],
    method: str,
    score: str,
) -> dict[str, Any]:
    """``{method: {shift/metric: mean}}`` for ``method`` and every baseline a gate names (the
    :data:`HEADLINE` metrics and each gated one), and ``gates``: whether all pass, and per
    comparison gate (``<shift>/<metric>-vs-<baseline or value>``) whether it passes and, for an
    interval gate, the paired difference and its interval. Non-finite values are left out."""
    comparing = gates.get("comparisons", [])
    headline = [f"{shift}/{metric.format(score=score)}" for shift, metric in HEADLINE]
    keys = dict.fromkeys([*headline, *(f"{gate['shift']}/{gate['metric']}" for gate in comparing)])
    methods = dict.fromkeys(
        [method, *(gate["baseline"] for gate in comparing if "baseline" in gate)]
    )
    means = {(r.method, f"{r.shift}/{r.metric}"): r.mean for r in summary.itertuples()}
    document: dict[str, Any] = {name: {} for name in methods}
    for name in methods:
        for key in keys:
            if (name, key) in means:
                put_finite(document[name], key, means[name, key])
    passed = all(r.passed for r in check_gates(summary, comparisons, gates, method))
    document["gates"] = {"passed": passed}
    for gate in comparing:
        figures: dict[str, Any] = {"passed": gate_result(summary, comparisons, gate, method).passed}
        row = interval_row(comparisons, gate, method) if gate.get("interval") else None
        if row is not None:
            for column in ("difference", "low", "high"):
                put_finite(figures, column, row[column])
        against = gate.get("baseline", gate.get("value"))
        document["gates"][f"{gate['shift']}/{gate['metric']}-vs-{against}"] = figures
    return document
