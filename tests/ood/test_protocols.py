"""The deploy and paper protocols."""

import numpy as np
import pytest

from croft_pipeline import ood


def test_deploy_threshold_keeps_the_requested_share_of_id():
    rng = np.random.default_rng(0)
    for n in (1, 7, 20, 101, 1000):
        scores = rng.normal(size=n)
        threshold = ood.deploy_threshold(scores, tpr=0.95)
        kept = ood.apply_threshold(scores, threshold).mean()
        assert kept >= 0.95
        # The threshold is the largest one that keeps 95 %: one step higher drops below it.
        above = scores[scores > threshold]
        if above.size:
            assert ood.apply_threshold(scores, above.min()).mean() < 0.95


def test_paper_protocol_hand_computed():
    # Reference: 21 correct samples scored 0..20 (5th percentile = 1.0) plus one wrong sample
    # scored -100 that must be ignored.
    reference = np.r_[np.arange(21.0), -100.0]
    correct = np.r_[np.ones(21, bool), False]
    result = ood.paper_protocol(reference, correct, ood_scores=[1.0, 1.5, 30.0, -5.0])
    assert result["threshold"] == pytest.approx(1.0)
    assert result["fpr"] == pytest.approx(2 / 4)  # strictly above: 1.5 and 30
    assert result["n_reference_correct"] == 21
    assert result["auroc"] == pytest.approx(ood.auroc(np.arange(21.0), [1.0, 1.5, 30.0, -5.0]))


def test_paper_protocol_needs_a_correct_reference_sample():
    with pytest.raises(ValueError, match="no correctly classified"):
        ood.paper_protocol([1.0, 2.0], [False, False], [0.0])
    with pytest.raises(ValueError, match="correctness flags"):
        ood.paper_protocol([1.0, 2.0], [True], [0.0])
