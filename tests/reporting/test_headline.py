"""The headline numbers DVC compares across experiments (reporting.headline)."""

import math

import pandas as pd

from croft_pipeline.ood.comparisons import COMPARISON_COLUMNS
from croft_pipeline.publishing.gates import check_gates
from croft_pipeline.reporting.headline import headline_metrics

METHODS = ("croft", "zero_shot", "linear_probe")
METRICS = (
    ("id", "accuracy"),
    ("covariate", "accuracy"),
    ("covariate_novel", "accuracy"),
    ("openset", "energy_auroc"),
    ("openset", "energy_fpr95_id_positive"),
    ("openset", "msp_auroc"),
    ("openset", "msp_fpr95_id_positive"),
    ("openset_far", "energy_auroc"),
    ("id", "deploy_tpr"),
    ("openset", "deploy_fpr"),
)
SUMMARY = pd.DataFrame(
    [
        (method, shift, metric, 0.5 + 0.01 * i + 0.1 * j, 0.01)
        for j, method in enumerate(METHODS)
        for i, (shift, metric) in enumerate(METRICS)
    ],
    columns=["method", "shift", "metric", "mean", "std"],
)
COMPARISONS = pd.DataFrame(
    [
        ("croft", "zero_shot", "vs zero-shot", "covariate", "accuracy", 0.10, 0.04, 0.16, 0.95, 3),
        (
            "croft",
            "zero_shot",
            "vs zero-shot",
            "openset_far",
            "energy_auroc",
            -0.03,
            -0.07,
            0.01,
            0.95,
            3,
        ),
    ],
    columns=COMPARISON_COLUMNS,
)
INTERVAL = {"op": ">", "baseline": "zero_shot", "interval": True}
GATES = {
    "require_finite": True,
    "comparisons": [
        {"shift": "covariate", "metric": "accuracy", **INTERVAL},  # passes
        {"shift": "openset_far", "metric": "energy_auroc", **INTERVAL},  # within noise: fails
        {"shift": "covariate_novel", "metric": "accuracy", "op": ">=", "value": 0.4},
    ],
}


def _mean(method: str, key: str) -> float:
    shift, metric = key.split("/")
    rows = SUMMARY[
        (SUMMARY["method"] == method) & (SUMMARY["shift"] == shift) & (SUMMARY["metric"] == metric)
    ]
    return float(rows["mean"].iloc[0])


def test_the_served_method_and_its_gate_baselines_with_the_compared_score():
    document = headline_metrics(SUMMARY, COMPARISONS, GATES, "croft", "energy")
    assert list(document) == ["croft", "zero_shot", "gates"]  # linear_probe: no gate names it
    expected = [
        "id/accuracy",
        "covariate/accuracy",
        "openset/energy_auroc",
        "openset/energy_fpr95_id_positive",
        "id/deploy_tpr",  # at the calibrated threshold
        "openset/deploy_fpr",
        "openset_far/energy_auroc",  # gated
        "covariate_novel/accuracy",  # gated
    ]
    for method in ("croft", "zero_shot"):
        assert list(document[method]) == expected
        assert all(document[method][k] == round(_mean(method, k), 6) for k in expected)
    msp = headline_metrics(SUMMARY, COMPARISONS, GATES, "zero_shot", "msp")
    assert (
        "openset/msp_auroc" in msp["zero_shot"] and "openset/energy_auroc" not in msp["zero_shot"]
    )


def test_gate_figures_are_the_gates_verdicts_and_intervals():
    gates = headline_metrics(SUMMARY, COMPARISONS, GATES, "croft", "energy")["gates"]
    results = check_gates(SUMMARY, COMPARISONS, GATES, "croft")
    assert gates["passed"] is all(r.passed for r in results) is False
    assert gates["covariate/accuracy-vs-zero_shot"] == {
        "passed": True,
        "difference": 0.1,
        "low": 0.04,
        "high": 0.16,
    }
    assert gates["openset_far/energy_auroc-vs-zero_shot"]["passed"] is False
    assert gates["covariate_novel/accuracy-vs-0.4"] == {"passed": True}  # no interval: a value
    only_passing = {**GATES, "comparisons": GATES["comparisons"][:1]}
    assert headline_metrics(SUMMARY, COMPARISONS, only_passing, "croft", "energy")["gates"][
        "passed"
    ]


def test_non_finite_values_are_left_out():
    broken = SUMMARY.copy()
    broken.loc[(broken["method"] == "croft") & (broken["shift"] == "id"), "mean"] = math.nan
    document = headline_metrics(broken, COMPARISONS, GATES, "croft", "energy")
    assert "id/accuracy" not in document["croft"] and "id/accuracy" in document["zero_shot"]
    assert document["gates"]["passed"] is False  # the finite gate fails too
