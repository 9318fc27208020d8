"""Quality gates as data."""

import pandas as pd
import pytest

from croft_pipeline.publishing.gates import check_gates

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
NO_INTERVALS = pd.DataFrame(
    columns=["method", "baseline", "shift", "metric", "difference", "low", "high", "level", "units"]
)
INTERVALS = pd.DataFrame(
    [
        # covariate accuracy: +0.10 with the whole interval above 0 (beats zero-shot beyond noise)
        ("croft", "zero_shot", "covariate", "accuracy", 0.10, 0.04, 0.16, 0.95, 3),
        # AUROC: -0.03 but the interval straddles 0 (not worse beyond noise)
        ("croft", "zero_shot", "openset", "energy_auroc", -0.03, -0.07, 0.01, 0.95, 3),
        # ID accuracy: +0.002, within noise
        ("croft", "zero_shot", "id", "accuracy", 0.002, -0.01, 0.014, 0.95, 3),
    ],
    columns=NO_INTERVALS.columns,
)


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
    results = check_gates(SUMMARY, NO_INTERVALS, gates, "croft")
    assert [r.passed for r in results] == [True, True, False, True]
    assert results[2].detail == "0.6500 > 0.6800"
    assert results[3].name == "auroc floor"


def test_non_finite_and_missing_metrics_fail():
    broken = SUMMARY.copy()
    broken.loc[0, "std"] = float("nan")
    results = check_gates(broken, NO_INTERVALS, {"comparisons": [BEATS_ZERO_SHOT]}, "croft")
    assert not results[0].passed and "covariate/accuracy" in results[0].detail
    missing = check_gates(
        SUMMARY,
        NO_INTERVALS,
        {"comparisons": [{**BEATS_ZERO_SHOT, "baseline": "linear_probe"}]},
        "croft",
    )
    assert not missing[1].passed and "missing" in missing[1].detail
    assert not check_gates(SUMMARY, NO_INTERVALS, {}, "unknown_method")[0].passed


def test_bad_gate_definitions_raise():
    with pytest.raises(ValueError, match="operator must be one of"):
        check_gates(
            SUMMARY, NO_INTERVALS, {"comparisons": [{**BEATS_ZERO_SHOT, "op": "=="}]}, "croft"
        )
    with pytest.raises(ValueError, match="exactly one of 'baseline' or 'value'"):
        check_gates(
            SUMMARY, NO_INTERVALS, {"comparisons": [{**BEATS_ZERO_SHOT, "value": 0.5}]}, "croft"
        )


def test_interval_gates_pass_only_beyond_noise():
    def gate(shift, metric, op):
        return {
            "shift": shift,
            "metric": metric,
            "op": op,
            "baseline": "zero_shot",
            "interval": True,
        }

    gates = {
        "require_finite": False,
        "comparisons": [
            gate("covariate", "accuracy", ">"),  # beats beyond noise: pass
            gate("id", "accuracy", ">"),  # +0.002 within noise: a bare '>' would pass; fail
            gate("openset", "energy_auroc", ">="),  # not worse beyond noise: pass
            gate("openset", "energy_auroc", ">"),  # does not beat: fail
            gate("covariate_novel", "accuracy", ">"),  # no interval computed: fail
        ],
    }
    results = check_gates(SUMMARY, INTERVALS, gates, "croft")
    assert [r.passed for r in results] == [True, False, True, False, False]
    assert "[+0.0400, +0.1600] over 3 units" in results[0].detail
    assert "no interval" in results[4].detail
    with pytest.raises(ValueError, match="interval gate needs op"):
        check_gates(SUMMARY, INTERVALS, {"comparisons": [gate("id", "accuracy", "==")]}, "croft")
