"""Which pairs are compared, over which units, and a refusal when the pairing breaks."""

from __future__ import annotations

import pandas as pd
import pytest

from croft_pipeline.ood.comparisons import (
    ComparisonConfig,
    compare_methods,
    planned_pairs,
    unit_keys,
)
from croft_pipeline.ood.evaluation import EvaluationConfig, score_predictions
from tests.ood.synthetic import LOGIT_SCALE, synthetic_predictions

CONFIG = EvaluationConfig(scores={"energy": {}})
FAST = ComparisonConfig(draws=200)


def test_the_planned_pairs_and_their_roles():
    methods = [
        "zero_shot",
        "linear_probe",
        "linear_probe+wise",
        "croft_clean",
        "croft_clean+wise",
        "croft_no_edr",
        "croft_no_edr+wise",
    ]
    summary = pd.DataFrame(
        [(m, "id", "accuracy", 0.5 + 0.01 * i) for i, m in enumerate(methods)],
        columns=["method", "shift", "metric", "mean"],
    )
    summary.loc[summary["method"] == "linear_probe+wise", "mean"] = 0.9  # the best baseline
    pairs = {
        p[:3]
        for p in planned_pairs(
            methods, summary, [("id", "accuracy")], [("croft_clean", "linear_probe")]
        )
    }
    assert ("vs zero-shot", "croft_no_edr", "zero_shot") in pairs
    assert ("vs no EDR", "croft_clean", "croft_no_edr") in pairs
    assert ("vs no EDR", "croft_clean+wise", "croft_no_edr+wise") in pairs  # like with like
    assert ("vs best baseline", "croft_clean", "linear_probe+wise") in pairs
    assert ("wise vs fine-tuned", "linear_probe+wise", "linear_probe") in pairs
    assert ("gate", "croft_clean", "linear_probe") in pairs
    assert not any(role == "vs no EDR" and m.startswith("croft_no_edr") for role, m, _ in pairs)
    assert not any(role == "vs best baseline" and b.startswith("croft") for role, _, b in pairs)
    assert all(m != b for _, m, b in pairs)


def _scored(folds=("a", "b"), croft_signal=0.9, n_per_split=30) -> pd.DataFrame:
    parts = []
    for fold in folds:
        predictions = synthetic_predictions(
            {"zero_shot": 0.4, "croft_clean": croft_signal}, seeds=(1, 2), n_per_split=n_per_split
        )
        parts.append(score_predictions(predictions, LOGIT_SCALE, CONFIG).samples.assign(fold=fold))
    return pd.concat(parts, ignore_index=True)


def test_units_are_folds_times_seeds_and_a_clear_win_is_found():
    scores = _scored()
    summary = pd.DataFrame(columns=["method", "shift", "metric", "mean"])
    table = compare_methods(scores, summary, CONFIG, FAST)
    row = table[(table["method"] == "croft_clean") & (table["shift"] == "covariate")].iloc[0]
    assert row["units"] == 4 and row["baseline"] == "zero_shot" and row["low"] > 0


def test_methods_scored_on_different_samples_are_refused():
    scores = _scored(folds=("a",))
    dropped = scores.drop(
        scores[(scores["method"] == "croft_clean") & (scores["split"] == "test_id")].index[:1]
    )
    summary = pd.DataFrame(columns=["method", "shift", "metric", "mean"])
    with pytest.raises(ValueError, match="scored on different id samples"):
        compare_methods(dropped, summary, CONFIG, FAST)


def test_backbones_are_units_resampled_as_clusters():
    """Backbone 0 gains a lot, backbone 1 loses: the units are backbones x folds x seeds, and
    resampling the backbones as clusters widens the interval beyond the one of the same eight
    units taken as independent."""
    scores = pd.concat(
        [
            _scored(croft_signal=signal, n_per_split=120).assign(backbone=b)
            for b, signal in ((0, 0.9), (1, 0.1))
        ],
        ignore_index=True,
    )
    assert unit_keys(scores) == ["backbone", "fold", "seed"]
    independent = scores.assign(fold=scores["fold"] + "/" + scores["backbone"].astype(str))
    summary = pd.DataFrame(columns=["method", "shift", "metric", "mean"])

    def covariate(samples):
        table = compare_methods(samples, summary, CONFIG, FAST)
        return table[(table["method"] == "croft_clean") & (table["shift"] == "covariate")].iloc[0]

    clustered, flat = covariate(scores), covariate(independent.drop(columns="backbone"))
    assert clustered["units"] == flat["units"] == 8
    assert clustered["difference"] == pytest.approx(flat["difference"])
    assert clustered["high"] - clustered["low"] > 1.5 * (flat["high"] - flat["low"])


def test_two_scores_of_one_method_are_compared_on_the_same_samples():
    """compare_scores pairs a method's two score columns: energy − msp's difference is the mean
    over units of their AUROC difference; a score against itself is exactly 0."""
    from sklearn.metrics import roc_auc_score

    from croft_pipeline.ood.comparisons import compare_scores

    config = EvaluationConfig(scores={"energy": {}, "msp": {}})
    predictions = synthetic_predictions(seeds=(1, 2))
    scores = score_predictions(predictions, LOGIT_SCALE, config).samples
    table = compare_scores(scores, config, FAST, [("energy", "msp"), ("msp", "msp")], ["openset"])
    assert set(table["shift"]) == {"openset"} and len(table) == 4
    assert set(table["role"]) == {"energy vs msp", "msp vs msp"}
    assert (table["method"] == table["baseline"]).all() and set(table["metric"]) == {"auroc"}
    row = table.query("method == 'zero_shot' and role == 'energy vs msp'").iloc[0]
    expected = []
    for _, unit in scores[scores["method"] == "zero_shot"].groupby("seed"):
        part = unit[unit["split"].isin(["test_id", "test_openset"])]
        labels = part["split"] == "test_id"
        expected.append(
            roc_auc_score(labels, part["score_energy"]) - roc_auc_score(labels, part["score_msp"])
        )
    assert row["difference"] == pytest.approx(sum(expected) / 2) and row["units"] == 2
    same = table.query("role == 'msp vs msp'")
    assert (same["difference"] == 0).all() and (same["low"] == 0).all()
