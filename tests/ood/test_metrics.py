"""Metrics on hand-computed cases and against their definitions on random tied scores."""

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_curve

from croft_pipeline import ood

# ID (positive) scores 4, 3, 2, 1 and OOD scores 2.5, 0: of the 8 pairs, (2, 2.5) and (1, 2.5)
# are mis-ordered -> AUROC = 6/8.
ID_SCORES = [4.0, 3.0, 2.0, 1.0]
OOD_SCORES = [2.5, 0.0]


def test_auroc_hand_computed():
    assert ood.auroc(ID_SCORES, OOD_SCORES) == pytest.approx(6 / 8)
    assert ood.auroc([1.0, 2.0], [0.0]) == 1.0
    assert ood.auroc([0.0], [1.0, 2.0]) == 0.0
    assert ood.auroc([1.0], [1.0]) == 0.5  # a tie counts half


def test_aupr_hand_computed():
    # Descending: 4(ID) 3(ID) 2.5(OOD) 2(ID) 1(ID) 0(OOD).
    # AUPR-In: recall steps of 1/4 at precisions 1, 1, 3/4, 4/5.
    assert ood.aupr_in(ID_SCORES, OOD_SCORES) == pytest.approx((1 + 1 + 3 / 4 + 4 / 5) / 4)
    # AUPR-Out ranks by -score: 0(OOD) 1 2 2.5(OOD) 3 4: precisions 1 and 2/4 at recall 1/2, 1.
    assert ood.aupr_out(ID_SCORES, OOD_SCORES) == pytest.approx((1 + 2 / 4) / 2)


def test_fpr_at_tpr_hand_computed():
    id_scores = np.arange(1.0, 21.0)  # 20 ID samples: threshold 2 keeps 19/20 = 95 %
    assert ood.fpr_at_tpr(id_scores, [1.5, 2.0, 30.0, 0.0]) == pytest.approx(2 / 4)
    # With 10 ID samples, 95 % TPR needs all 10 kept: threshold = the minimum (1).
    assert ood.fpr_at_tpr(np.arange(1.0, 11.0), [1.0, 0.5]) == pytest.approx(1 / 2)


def test_accuracy_hand_computed():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 1])
    assert ood.accuracy(logits, labels) == pytest.approx(3 / 4)


@pytest.mark.parametrize("seed", range(30))
def test_metrics_match_their_definitions_on_tied_scores(seed):
    """AUROC = Mann-Whitney U / (n m) with ties counted half; AUPR = sum over distinct thresholds
    of recall step x precision, ID positive (In) or OOD positive on negated scores (Out); the FPR
    at 95 % TPR is the lowest FPR of scikit-learn's ROC curve that reaches it."""
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(1, 60, size=2)
    id_scores = rng.integers(0, 10, n_id).astype(float)  # integers: many ties
    ood_scores = rng.integers(0, 10, n_ood).astype(float) - 2
    labels = np.r_[np.ones(n_id), np.zeros(n_ood)]
    scores = np.r_[id_scores, ood_scores]
    assert ood.auroc(id_scores, ood_scores) == pytest.approx(_mann_whitney(id_scores, ood_scores))
    assert ood.aupr_in(id_scores, ood_scores) == pytest.approx(_ap(id_scores, ood_scores))
    assert ood.aupr_out(id_scores, ood_scores) == pytest.approx(_ap(-ood_scores, -id_scores))
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    sklearn_fpr95 = fpr[np.flatnonzero(tpr >= 0.95)[0]]  # lowest FPR reaching 95 % TPR
    assert ood.fpr_at_tpr(id_scores, ood_scores) == pytest.approx(sklearn_fpr95)


def _mann_whitney(pos: np.ndarray, neg: np.ndarray) -> float:
    ranks = rankdata(np.concatenate([pos, neg]))
    return (ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size)


def _ap(pos: np.ndarray, neg: np.ndarray) -> float:
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="stable")
    scores, is_pos = scores[order], is_pos[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_pos = np.cumsum(is_pos)[last_of_tie]
    return float(np.sum(np.diff(np.r_[0.0, true_pos]) / pos.size * true_pos / (last_of_tie + 1)))


def test_ood_metrics_bundle_and_sign_convention():
    metrics = ood.ood_metrics([5.0, 6.0, 7.0], [1.0, 2.0])
    assert metrics == {
        "fpr95_id_positive": 0.0,
        "fpr95_ood_positive": 0.0,
        "auroc": 1.0,
        "aupr_in": 1.0,
        "aupr_out": 1.0,
    }
    flipped = ood.ood_metrics([1.0, 2.0], [5.0, 6.0, 7.0])
    assert flipped["auroc"] == 0.0
    assert flipped["fpr95_id_positive"] == flipped["fpr95_ood_positive"] == 1.0


@pytest.mark.parametrize(
    "id_scores, ood_scores, message",
    [([], [1.0], "ID scores is empty"), ([1.0, np.nan], [1.0], "non-finite")],
)
def test_bad_scores_raise_clear_errors(id_scores, ood_scores, message):
    with pytest.raises(ValueError, match=message):
        ood.ood_metrics(id_scores, ood_scores)


def test_bad_tpr_raises():
    with pytest.raises(ValueError, match="tpr must be in"):
        ood.fpr_at_tpr([1.0], [0.0], tpr=0.0)


def test_the_two_fpr_conventions_on_a_hand_case():
    """ID [1, 2, 3, 4], OOD [0, 1.5, 3.5, 5] at 75 % TPR.
    ID positive (CRoFT, NegLabel): the threshold keeping 3 of 4 ID is 2; OOD at or above it:
    3.5 and 5 -> 0.5. OOD positive (OpenOOD): the threshold catching 3 of 4 OOD (score <= t)
    is 3.5; ID at or below it: 1, 2, 3 -> 0.75."""
    id_scores, ood_scores = [1.0, 2.0, 3.0, 4.0], [0.0, 1.5, 3.5, 5.0]
    metrics = ood.ood_metrics(id_scores, ood_scores, tpr=0.75)
    assert metrics["fpr95_id_positive"] == 0.5
    assert metrics["fpr95_ood_positive"] == 0.75


def test_correct_only_metrics_drop_the_misclassified_id_samples():
    """CRoFT's evaluation: ID 1 is misclassified; AUROC of [2, 3, 4] vs the OOD set is
    (2 + 2 + 3) / 12, against 8 / 16 with every ID sample."""
    from croft_pipeline.ood.metrics import correct_id_metrics

    id_scores, ood_scores = [1.0, 2.0, 3.0, 4.0], [0.0, 1.5, 3.5, 5.0]
    correct = [False, True, True, True]
    metrics = correct_id_metrics(id_scores, correct, ood_scores, tpr=0.75)
    assert metrics["auroc_correct_id"] == pytest.approx(7 / 12)
    assert ood.ood_metrics(id_scores, ood_scores)["auroc"] == pytest.approx(0.5)
    assert metrics["fpr95_id_positive_correct_id"] == 0.5  # threshold 2 keeps all 3 correct
    assert correct_id_metrics(id_scores, [False] * 4, ood_scores) == {}
