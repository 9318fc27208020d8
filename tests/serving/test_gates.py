"""Quality gates as data."""

import pandas as pd
import pytest

from croft_pipeline.serving.gates import check_gates

SUMMARY = pd.DataFrame(
    [
        ("croft", "covariate", "accuracy", 0.70, 0.01),
        ("zero_shot", "covariate", "accuracy", 0.60, 0.02),
        ("croft", "openset", "energy_auroc", 0.65, 0.03),
        ("zero_shot", "openset", "energy_auroc", 0.68, 0.01),
    ],
    columns=["method", "shift", "metric", "mean", "std"],
)
BEATS_ZERO_SHOT = {"shift": "covariate", "metric": "accuracy", "op": ">", "baseline": "zero_shot"}


def test_comparison_against_a_baseline_and_a_value():
    gates = {
        "require_finite": True,
        "comparisons": [
            BEATS_ZERO_SHOT,
            {"shift": "openset", "metric": "energy_auroc", "op": ">", "baseline": "zero_shot"},
            {
                "shift": "openset",
                "metric": "energy_auroc",
                "op": ">=",
                "value": 0.6,
                "name": "auroc floor",
            },
        ],
    }
    results = check_gates(SUMMARY, gates, "croft")
    assert [r.passed for r in results] == [True, True, False, True]
    assert results[2].detail == "0.6500 > 0.6800"
    assert results[3].name == "auroc floor"


def test_non_finite_and_missing_metrics_fail():
    broken = SUMMARY.copy()
    broken.loc[0, "std"] = float("nan")
    results = check_gates(broken, {"comparisons": [BEATS_ZERO_SHOT]}, "croft")
    assert not results[0].passed and "covariate/accuracy" in results[0].detail
    missing = check_gates(
        SUMMARY, {"comparisons": [{**BEATS_ZERO_SHOT, "baseline": "linear_probe"}]}, "croft"
    )
    assert not missing[1].passed and "missing" in missing[1].detail
    assert not check_gates(SUMMARY, {}, "unknown_method")[0].passed


def test_bad_gate_definitions_raise():
    with pytest.raises(ValueError, match="operator must be one of"):
        check_gates(SUMMARY, {"comparisons": [{**BEATS_ZERO_SHOT, "op": "=="}]}, "croft")
    with pytest.raises(ValueError, match="exactly one of 'baseline' or 'value'"):
        check_gates(SUMMARY, {"comparisons": [{**BEATS_ZERO_SHOT, "value": 0.5}]}, "croft")
