"""The score registry: hand-computed values and the higher-is-more-ID convention."""

import math

import numpy as np
import pytest

from croft_pipeline import ood
from croft_pipeline.ood import ScoreInputs, compute_score
from croft_pipeline.ood import scores as scores_module
from croft_pipeline.ood.params import SCORE_PARAMS
from croft_pipeline.ood.scores import Negatives, score_parameters

LOGITS = np.array([[2.0, 0.0], [1.0, 1.0]])


def test_registry_names():
    assert ood.score_names() == ["energy", "knn", "max_logit", "mcm", "msp", "neglabel"]


def test_each_score_takes_the_parameters_and_defaults_its_model_declares():
    """The start-of-run check (``ood.params.SCORE_PARAMS``) and the score functions agree."""
    assert sorted(SCORE_PARAMS) == ood.score_names()
    for name, model in SCORE_PARAMS.items():
        assert score_parameters(name) == model().model_dump(), name


def test_energy_msp_max_logit_hand_computed():
    inputs = ScoreInputs(LOGITS)
    energy = compute_score("energy", inputs)
    assert energy == pytest.approx([math.log(math.exp(2) + 1), math.log(2 * math.e)])
    assert compute_score("msp", inputs) == pytest.approx([math.e**2 / (math.e**2 + 1), 0.5])
    assert compute_score("max_logit", inputs) == pytest.approx([2.0, 1.0])
    # Temperature T: T * logsumexp(logits / T).
    assert compute_score("energy", inputs, temperature=2.0)[0] == pytest.approx(
        2 * math.log(math.e + 1)
    )


def test_mcm_divides_by_logit_scale_and_temperature():
    scaled = ScoreInputs(LOGITS * 10.0, logit_scale=10.0)
    assert compute_score("mcm", scaled) == pytest.approx(compute_score("msp", ScoreInputs(LOGITS)))
    cooled = compute_score("mcm", scaled, temperature=0.5)
    assert cooled[0] == pytest.approx(math.e**4 / (math.e**4 + 1))


def test_knn_is_negative_distance_to_kth_neighbour():
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = np.array([[2.0, 0.0], [0.0, -3.0]])  # normalized to (1, 0) and (0, -1)
    inputs = ScoreInputs(np.zeros((2, 3)), embeddings=queries, bank=bank)
    assert compute_score("knn", inputs, k=1) == pytest.approx([0.0, -math.sqrt(2)])
    assert compute_score("knn", inputs, k=3) == pytest.approx([-2.0, -2.0])
    # Small batches give the same answer.
    whole = compute_score("knn", inputs, k=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scores_module, "KNN_BATCH", 1)
        assert compute_score("knn", inputs, k=2) == pytest.approx(whole)


def test_knn_of_a_row_does_not_depend_on_the_rows_beside_it():
    # Queries next to bank rows: the matrix-product distance there differs in its last bits
    # with the number of queries (43 rows of 700 did, before the exact recompute).
    generator = np.random.default_rng(0)
    bank = generator.standard_normal((300, 64))
    queries = bank[generator.integers(0, 300, 700)] + 1e-3 * generator.standard_normal((700, 64))
    whole = compute_score("knn", ScoreInputs(np.zeros((700, 2)), embeddings=queries, bank=bank))
    for rows in (np.arange(43), np.arange(5), np.arange(0, 700, 16)):
        part = ScoreInputs(np.zeros((len(rows), 2)), embeddings=queries[rows], bank=bank)
        assert np.array_equal(compute_score("knn", part), whole[rows])


@pytest.mark.parametrize("name", sorted(ood.SCORES))
def test_every_score_ranks_a_confident_id_sample_above_an_ambiguous_one(name):
    # Sample 0: a sharp logit on a class whose direction is in the bank; sample 1: flat logits
    # and a feature far from the bank.
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    embeddings = np.array([[1.0, 0.0], [-1.0, 0.1]])
    bank = np.array([[1.0, 0.05], [0.9, -0.1]])
    # 1,000 negative labels at 0.5 cosine: the default share (0.15) fills the 100 default groups
    negatives = Negatives(np.full((2, 1000), 5.0), (np.arange(1000) + 1) / 1000)
    scores = compute_score(name, ScoreInputs(logits, 10.0, embeddings, bank, negatives))
    assert scores[0] > scores[1]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(KeyError, match="unknown OOD score 'odin'"):
        compute_score("odin", ScoreInputs(LOGITS))
    with pytest.raises(ValueError, match=r"logits must be \[N, K\]"):
        ScoreInputs(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        ScoreInputs(np.array([[np.inf, 0.0]]))
    with pytest.raises(ValueError, match="needs embeddings"):
        compute_score("knn", ScoreInputs(LOGITS))
    with pytest.raises(ValueError, match=r"k must be <= the KNN bank size \(2 ID feature rows\)"):
        compute_score("knn", ScoreInputs(LOGITS, embeddings=np.eye(2), bank=np.eye(2)), k=3)
    with pytest.raises(ValueError, match="embedding dim"):
        compute_score("knn", ScoreInputs(LOGITS, embeddings=np.eye(2), bank=np.ones((2, 3))))
    with pytest.raises(ValueError, match="temperature"):
        compute_score("energy", ScoreInputs(LOGITS), temperature=0.0)


def test_score_parameters_fill_defaults_and_name_unknown_ones():
    assert score_parameters("energy", {}) == score_parameters("energy", {"temperature": 1.0})
    assert score_parameters("knn", {"k": 3})["k"] == 3
    with pytest.raises(ValueError, match=r"score 'energy' has no parameter\(s\) \['temprature'\]"):
        compute_score("energy", ScoreInputs(LOGITS), temprature=2.0)
