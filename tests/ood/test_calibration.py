"""The deploy threshold is fixed on ID validation data, on the score with its configured
parameters, and evaluation refuses to apply it to the same score under other parameters."""

import numpy as np
import pytest
from scipy.special import logsumexp

from croft_pipeline.ood.calibration import calibrate_thresholds
from croft_pipeline.ood.evaluation import EvaluationConfig, evaluate_scores, score_predictions
from tests.ood.synthetic import LOGIT_SCALE, synthetic_predictions

TEMPERATURE = 2.0


def _energy(logits: np.ndarray, temperature: float) -> np.ndarray:
    return temperature * logsumexp(logits / temperature, axis=1)


def test_threshold_is_set_on_validation_with_the_configured_temperature():
    predictions = synthetic_predictions()
    scores = {"energy": {"temperature": TEMPERATURE}}
    calibration = calibrate_thresholds(predictions, LOGIT_SCALE, "energy", 0.95, scores, "train")
    for method, seeds in calibration.items():
        for seed, entry in seeds.items():
            rows = predictions[
                (predictions["method"] == method) & (predictions["seed"] == int(seed))
            ]
            val = rows[rows["split"] == "val"]
            logits = np.stack(val["logits"].to_numpy()).astype(np.float64)
            hot, cold = _energy(logits, TEMPERATURE), _energy(logits, 1.0)
            assert entry["params"] == {"temperature": TEMPERATURE}  # every parameter of energy
            assert entry["threshold"] in set(hot.tolist())  # a T = 2 score, never a T = 1 one
            assert entry["threshold"] not in set(cold.tolist())
            assert entry["val_tpr"] == pytest.approx(np.mean(hot >= entry["threshold"]))
            assert 0.95 <= entry["val_tpr"] < 0.95 + 1.0 / len(val) + 1e-9

    config = EvaluationConfig(scores=scores)
    scored = score_predictions(predictions, LOGIT_SCALE, config).samples
    results, _ = evaluate_scores(scored, calibration, config)
    assert (results["metric"] == "deploy_tpr").any()


def test_a_threshold_is_not_applied_to_the_score_under_other_parameters():
    predictions = synthetic_predictions()
    calibration = calibrate_thresholds(
        predictions, LOGIT_SCALE, "energy", 0.95, {"energy": {"temperature": 1.0}}, "train"
    )
    config = EvaluationConfig(scores={"energy": {"temperature": TEMPERATURE}})
    scored = score_predictions(predictions, LOGIT_SCALE, config).samples
    with pytest.raises(
        ValueError, match=r"calibrated on energy with parameters \{'temperature': 1.0\}"
    ):
        evaluate_scores(scored, calibration, config)


def test_the_calibrated_score_must_be_an_evaluated_one():
    with pytest.raises(
        ValueError,
        match=r"calibrate.score must be one of evaluate.scores \['energy'\], got 'msp'",
    ):
        calibrate_thresholds(
            synthetic_predictions(), LOGIT_SCALE, "msp", 0.95, {"energy": {}}, "train"
        )
