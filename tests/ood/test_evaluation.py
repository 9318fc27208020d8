"""The evaluate core on synthetic prediction tables with a known structure."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score

from croft_pipeline.ood.evaluation import (
    EvaluationConfig,
    evaluate_scores,
    evaluated_metrics,
    metrics_document,
    non_finite_metrics,
    score_predictions,
    summarise,
)
from tests.ood.synthetic import LOGIT_SCALE, synthetic_calibration, synthetic_predictions

CONFIG = EvaluationConfig(
    scores={"energy": {}, "msp": {}, "max_logit": {}, "mcm": {}, "knn": {"k": 2}}
)


@pytest.fixture(scope="module")
def evaluated():
    predictions = synthetic_predictions()
    calibration = synthetic_calibration(predictions)
    scores = score_predictions(predictions, LOGIT_SCALE, CONFIG).samples
    results, domains = evaluate_scores(scores, calibration, CONFIG)
    return predictions, calibration, scores, results, domains


def _value(results, method, seed, shift, metric):
    row = results.query(
        "method == @method and seed == @seed and shift == @shift and metric == @metric"
    )
    assert len(row) == 1, (method, seed, shift, metric)
    return float(row["value"].iloc[0])


def _rows(predictions, method, seed, split):
    part = predictions.query("method == @method and seed == @seed and split == @split")
    return np.stack(part["logits"].to_numpy()).astype(float), part


def test_evaluated_metrics_lists_what_evaluation_reports(evaluated):
    """The start-of-run gate check relies on this list (config.schema.check_gate_config)."""
    results = evaluated[3]
    reported = set(zip(results["shift"], results["metric"], strict=True))
    assert reported <= evaluated_metrics(CONFIG.scores)
    assert ("openset", "energy_auroc") in reported and ("covariate", "accuracy") in reported


def test_scored_rows_are_the_evaluated_splits(evaluated):
    predictions, _, scores, _, _ = evaluated
    assert set(scores["split"]) == {"test_id", "test_covariate", "test_openset"}
    n_eval = predictions["split"].isin(["test_id", "test_covariate", "test_openset"]).sum()
    assert len(scores) == n_eval
    assert {"score_energy", "score_knn", "score_mcm"} <= set(scores.columns)


def test_accuracy_and_energy_auroc_match_direct_computation(evaluated):
    predictions, _, _, results, domains = evaluated
    for method in ("zero_shot", "croft_clean"):
        for seed in (1, 2):
            id_logits, id_part = _rows(predictions, method, seed, "test_id")
            cov_logits, cov_part = _rows(predictions, method, seed, "test_covariate")
            ood_logits, _ = _rows(predictions, method, seed, "test_openset")
            id_acc = np.mean(id_logits.argmax(1) == id_part["label"].to_numpy())
            cov_acc = np.mean(cov_logits.argmax(1) == cov_part["label"].to_numpy())
            assert _value(results, method, seed, "id", "accuracy") == pytest.approx(id_acc)
            assert _value(results, method, seed, "covariate", "accuracy") == pytest.approx(cov_acc)
            energy_in, energy_out = logsumexp(id_logits, axis=1), logsumexp(ood_logits, axis=1)
            expected = roc_auc_score(
                np.r_[np.ones(len(energy_in)), np.zeros(len(energy_out))],
                np.r_[energy_in, energy_out],
            )
            assert _value(results, method, seed, "openset", "energy_auroc") == pytest.approx(
                expected
            )
            per_domain = domains.query("method == @method and seed == @seed and shift == 'id'")
            correct = id_logits.argmax(1) == id_part["label"].to_numpy()
            for row in per_domain.itertuples():
                mask = id_part["domain"].to_numpy() == row.domain
                assert row.accuracy == pytest.approx(correct[mask].mean())
                assert row.n == mask.sum()


def test_deploy_rates_use_the_calibrated_threshold_unchanged(evaluated):
    predictions, calibration, _, results, _ = evaluated
    method, seed = "croft_clean", 2
    threshold = calibration[method][str(seed)]["threshold"]
    for split, shift, metric in [
        ("test_id", "id", "deploy_tpr"),
        ("test_covariate", "covariate", "deploy_tpr"),
        ("test_openset", "openset", "deploy_fpr"),
    ]:
        logits, _ = _rows(predictions, method, seed, split)
        expected = np.mean(logsumexp(logits, axis=1) >= threshold)
        assert _value(results, method, seed, shift, metric) == pytest.approx(expected)
    assert _value(results, method, seed, "openset", "deploy_threshold") == threshold


def test_paper_protocol_uses_correct_covariate_samples(evaluated):
    predictions, _, _, results, _ = evaluated
    logits, part = _rows(predictions, "zero_shot", 1, "test_covariate")
    correct = logits.argmax(1) == part["label"].to_numpy()
    reference = logsumexp(logits, axis=1)[correct]
    ood_energy = logsumexp(_rows(predictions, "zero_shot", 1, "test_openset")[0], axis=1)
    threshold = np.percentile(reference, 5)
    assert _value(results, "zero_shot", 1, "openset", "paper_fpr95_id_positive") == pytest.approx(
        np.mean(ood_energy > threshold)
    )


def test_the_stronger_method_wins_where_the_data_says_so(evaluated):
    *_, results, _ = evaluated
    summary = summarise(results).set_index(["method", "shift", "metric"])["mean"]
    for key in [("covariate", "accuracy"), ("openset", "energy_auroc"), ("openset", "knn_auroc")]:
        assert summary[("croft_clean", *key)] > summary[("zero_shot", *key)]
    assert (
        summary[("croft_clean", "openset", "energy_fpr95_id_positive")]
        < summary[("zero_shot", "openset", "energy_fpr95_id_positive")]
    )


def test_summary_is_mean_and_population_std_over_seeds(evaluated):
    *_, results, _ = evaluated
    summary = summarise(results)
    row = summary.query("method == 'zero_shot' and shift == 'id' and metric == 'accuracy'").iloc[0]
    per_seed = [_value(results, "zero_shot", s, "id", "accuracy") for s in (1, 2)]
    assert row["mean"] == pytest.approx(np.mean(per_seed))
    assert row["std"] == pytest.approx(np.std(per_seed))
    assert row["n_seeds"] == 2
    assert non_finite_metrics(summary) == []


def test_metrics_document_is_numbers_only_and_drops_non_finite():
    summary = pd.DataFrame(
        {
            "method": ["a", "a"],
            "shift": ["id", "openset"],
            "metric": ["accuracy", "energy_auroc"],
            "mean": [0.5, float("nan")],
            "std": [0.1, 0.0],
            "n_seeds": [2, 2],
        }
    )
    domains = pd.DataFrame(
        {
            "method": ["a"],
            "shift": ["id"],
            "domain": ["photo"],
            "mean": [0.25],
            "std": [0.0],
            "n_seeds": [2],
        }
    )
    document = metrics_document(summary, domains)
    assert document == {
        "a": {
            "id/accuracy": 0.5,
            "id/accuracy_std": 0.1,
            "openset/energy_auroc_std": 0.0,
            "domain/photo/accuracy": 0.25,
        }
    }
    assert non_finite_metrics(summary) == ["a/openset/energy_auroc"]


def test_bad_prediction_tables_raise_clear_errors():
    predictions = synthetic_predictions(methods={"m": 0.5}, seeds=(1,), n_per_split=4)
    with pytest.raises(ValueError, match=r"lacks columns \['embedding'\]"):
        score_predictions(predictions.drop(columns="embedding"), LOGIT_SCALE, CONFIG)
    first_test = predictions.index[predictions["split"] == "test_id"][0]
    ragged = predictions.copy()
    ragged.at[first_test, "logits"] = [1.0]
    with pytest.raises(ValueError, match="logits in predictions of m, seed 1: rows of different"):
        score_predictions(ragged, LOGIT_SCALE, CONFIG)
    broken = predictions.copy()
    broken.at[first_test + 1, "logits"] = [float("nan")] * 3
    with pytest.raises(ValueError, match="non-finite"):
        score_predictions(broken, LOGIT_SCALE, CONFIG)
    with pytest.raises(ValueError, match="no rows of the evaluated splits"):
        score_predictions(predictions[predictions["split"] == "train"], LOGIT_SCALE, CONFIG)
    no_bank = predictions[predictions["split"] != "train"]
    with pytest.raises(
        ValueError, match="score 'knn' on predictions of m, seed 1: .*ID feature bank"
    ):
        score_predictions(no_bank, LOGIT_SCALE, CONFIG)


def test_config_from_params():
    config = EvaluationConfig.from_params(
        {"scores": {"energy": None, "knn": {"k": 3}}, "tpr": 0.9, "paper": {"reference": "id"}}
    )
    assert config.scores == {"energy": {}, "knn": {"k": 3}}
    assert config.tpr == 0.9 and config.paper_reference == "id"


def test_full_spectrum_counts_the_covariate_shift_as_id(evaluated):
    """fsood: ID test ∪ covariate (positive) against the open-set classes; fsood_id accuracy
    pools both; the classic openset metrics keep ID test alone."""
    _, _, scores, results, _ = evaluated
    part = scores.query("method == 'zero_shot' and seed == 1")
    is_id = part["split"].isin(["test_id", "test_covariate"])
    both = part[is_id | (part["split"] == "test_openset")]
    expected = roc_auc_score(both["split"] != "test_openset", both["score_energy"])
    assert _value(results, "zero_shot", 1, "fsood", "energy_auroc") == pytest.approx(expected)
    assert _value(results, "zero_shot", 1, "fsood_id", "accuracy") == pytest.approx(
        part[is_id]["correct"].mean()
    )
    classic = part[part["split"].isin(["test_id", "test_openset"])]
    assert _value(results, "zero_shot", 1, "openset", "energy_auroc") == pytest.approx(
        roc_auc_score(classic["split"] == "test_id", classic["score_energy"])
    )
    assert expected != pytest.approx(_value(results, "zero_shot", 1, "openset", "energy_auroc"))
    correct = classic[(classic["split"] == "test_openset") | classic["correct"]]
    assert _value(results, "zero_shot", 1, "openset", "energy_auroc_correct_id") == pytest.approx(
        roc_auc_score(correct["split"] == "test_id", correct["score_energy"])
    )
