"""NegLabel: the WordNet vocabulary, NegMining, the grouped score and its grid choice."""

import numpy as np
import pandas as pd
import pytest
import torch

from croft_pipeline.ood import wordnet
from croft_pipeline.ood.evaluation import EvaluationConfig, score_predictions
from croft_pipeline.ood.neglabel import (
    grouped_id_mass,
    kept_columns,
    mined_order,
    mining_distances,
    mining_shares,
)
from croft_pipeline.ood.scores import Negatives, ScoreInputs, compute_score
from tests.ood.synthetic import LOGIT_SCALE, synthetic_predictions


def _unit(degrees):
    radians = np.deg2rad(degrees)
    return torch.tensor([[np.cos(r), np.sin(r)] for r in radians], dtype=torch.float64)


def test_negmining_keeps_the_candidates_farthest_from_every_id_class():
    """Two ID classes at 0° and 90°; nouns at 45°, 180°, 135°, 10°; adjectives at 270°, 80°.
    With η = 1 (the max cosine over the ID classes) the distances are hand-computable."""
    ids = _unit([0, 90])
    candidates = _unit([45, 180, 135, 10, 270, 80])
    pos = ["noun"] * 4 + ["adj"] * 2
    distances = mining_distances(candidates, ids, 1.0)
    expected = [np.cos(np.deg2rad(45)), 0.0, np.cos(np.deg2rad(45)), np.cos(np.deg2rad(10)), 0.0]
    assert distances.numpy()[:5] == pytest.approx(expected)
    shares = mining_shares(distances, pos)
    # nouns ranked 180° (0.0), then 45° and 135° (tied at cos 45°: file order), then 10°
    assert shares.tolist() == [0.5, 0.25, 0.75, 1.0, 0.5, 1.0]
    assert sorted(kept_columns(shares, 0.5)) == [0, 1, 4]  # int(4 · 0.5) nouns, int(2 · 0.5) adj
    order, ordered = mined_order(candidates, ids, pos, 1.0)
    assert order.tolist() == [1, 0, 4, 2, 3, 5] and list(ordered) == sorted(ordered)


def test_negmining_quantile_is_linear_interpolation_over_the_id_classes():
    ids = _unit([0, 60, 120])
    candidate = _unit([30])
    cosines = np.cos(np.deg2rad([30, 30, 90]))
    distance = mining_distances(candidate, ids, 0.95).item()
    assert distance == pytest.approx(np.quantile(cosines, 0.95))


def _direct_grouped(ids, negatives, groups, temperature, seed):
    """The official rule written out: permute, drop the remainder, one softmax per group."""
    order = torch.randperm(negatives.shape[1], generator=torch.Generator().manual_seed(seed))
    size = negatives.shape[1] // groups
    kept = negatives[:, order.numpy()[: size * groups]]
    scores = []
    for g in range(groups):
        full = np.concatenate([ids, kept[:, g * size : (g + 1) * size]], axis=1) / temperature
        soft = torch.softmax(torch.tensor(full), dim=1).numpy()
        scores.append(soft[:, : ids.shape[1]].sum(axis=1))
    return np.mean(scores, axis=0)


@pytest.mark.parametrize("groups", [1, 3, 7])
def test_grouped_score_equals_the_direct_computation(groups):
    rng = np.random.default_rng(0)
    ids, negatives = rng.uniform(-1, 1, (5, 4)), rng.uniform(-1, 1, (5, 23))
    ours = grouped_id_mass(ids, negatives, groups, 0.05, seed=3)
    # float32 exponentials of the negatives (negative_exps): agreement to float32 rounding
    assert ours == pytest.approx(_direct_grouped(ids, negatives, groups, 0.05, 3), rel=1e-6)
    if groups == 1:  # ungrouped: ID mass over everything
        z = np.exp(np.concatenate([ids, negatives], axis=1) / 0.05)
        assert ours == pytest.approx(z[:, :4].sum(1) / z.sum(1), rel=1e-6)


def test_grouped_score_is_stable_at_the_papers_temperature():
    """Cosines / 0.01 overflow a naive exp in float32; the score stays finite and in (0, 1]."""
    ids = np.array([[0.9, 0.1], [-0.5, -0.6]])
    negatives = np.array([[0.2, 0.95, -1.0, 0.0], [0.99, 0.98, 0.97, 0.96]])
    scores = grouped_id_mass(ids, negatives, 2, 0.01)
    assert np.isfinite(scores).all() and (scores > 0).all() and (scores <= 1).all()
    assert scores[0] > scores[1]
    with pytest.raises(ValueError, match="4 negative labels cannot fill 5 groups"):
        grouped_id_mass(ids, negatives, 5, 0.01)


def test_grouped_score_is_stable_when_id_logits_are_not_cosines():
    """A linear probe's logits over the logit scale can lie far outside [-1, 1]: ID terms 20
    above the negatives (e^2000 at T = 0.01) still give the direct computation's score."""
    ids = np.array([[20.0, 19.5], [0.1, 0.2], [-30.0, -29.0]])
    negatives = np.array([[0.3, 0.2, 0.1, 0.0]] * 3)
    ours = grouped_id_mass(ids, negatives, 2, 0.01, seed=1)
    assert np.isfinite(ours).all()
    assert ours == pytest.approx(_direct_grouped(ids, negatives, 2, 0.01, 1), rel=1e-6, abs=1e-300)


def test_neglabel_registry_score_keeps_the_share_and_divides_by_the_logit_scale():
    logits = np.array([[8.0, 1.0], [2.0, 2.0]])
    negatives = np.array([[1.0, 9.0, 0.5], [6.0, 7.0, 0.0]])
    shares = np.array([1 / 3, 1.0, 2 / 3])
    inputs = ScoreInputs(logits, 10.0, negatives=Negatives(negatives, shares))
    score = compute_score("neglabel", inputs, share=2 / 3, groups=1, temperature=0.1)
    kept = negatives[:, [0, 2]] / 10.0
    z = np.exp(np.concatenate([logits / 10.0, kept], axis=1) / 0.1)
    assert score == pytest.approx(z[:, :2].sum(1) / z.sum(1))
    with pytest.raises(ValueError, match="needs the negative labels"):
        compute_score("neglabel", ScoreInputs(logits, 10.0))


HEADER = "  1 This software and database is being provided to you, the LICENSEE\n"


def _wordnet(folder, nouns, adjectives):
    folder.mkdir(exist_ok=True)
    (folder / "data.noun").write_text(HEADER + "".join(nouns))
    (folder / "data.adj").write_text(HEADER + "".join(adjectives))
    return folder


def test_vocabulary_takes_each_synsets_first_lemma_once(tmp_path):
    folder = _wordnet(
        tmp_path / "wn",
        [
            "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is\n",
            "02084071 05 n 02 dog 0 domestic_dog 0 001 @ 02083346 n 0000 | a member\n",
            "03000000 06 n 01 hot_dog 0 000 | a sausage\n",
        ],
        [
            "00003939 00 a 01 dying 0 003 ! 00003356 a 0101 | in or associated with\n",
            "01000000 00 s 01 Dog 0 000 | a duplicate, case aside\n",
            "01100000 00 a 01 galore(ip) 0 000 | in great numbers\n",
        ],
    )
    vocabulary = wordnet.read_vocabulary(folder, ["noun", "adj"])
    assert vocabulary.to_dict("records") == [
        {"pos": "noun", "word": "entity", "lexname": "noun.Tops"},
        {"pos": "noun", "word": "dog", "lexname": "noun.animal"},
        {"pos": "noun", "word": "hot dog", "lexname": "noun.artifact"},
        {"pos": "adj", "word": "dying", "lexname": "adj.all"},
        {"pos": "adj", "word": "galore", "lexname": "adj.all"},
    ]
    subset = wordnet.read_vocabulary(folder, ["noun", "adj"], max_candidates=3, seed=1)
    assert len(subset) == 3 and subset.equals(
        wordnet.read_vocabulary(folder, ["noun", "adj"], max_candidates=3, seed=1)
    )


def test_a_missing_vocabulary_names_the_package(tmp_path):
    with pytest.raises(wordnet.VocabularyMissing, match=r"data\.noun missing.*wordnet-base"):
        wordnet.read_vocabulary(tmp_path, ["noun"])


def test_debians_wordnet_gives_nouns_and_adjectives():
    """The real vocabulary (CI installs Debian's wordnet-base; .ci/run)."""
    if not (wordnet.Path(wordnet.WORDNET_DIR) / "data.noun").is_file():
        pytest.skip("wordnet-base is not installed (apt-get install wordnet-base)")
    vocabulary = wordnet.read_vocabulary(wordnet.WORDNET_DIR, ["noun", "adj"])
    counts = vocabulary["pos"].value_counts().to_dict()
    assert counts["noun"] > 60_000 and counts["adj"] > 10_000  # 67,186 and 12,217 in 3.0
    assert vocabulary["word"].str.lower().is_unique
    assert set(vocabulary["lexname"]) <= set(wordnet.LEXNAMES)


def _with_openset_validation(predictions):
    """The synthetic table plus an OOD validation split (open-set rows relabelled)."""
    openset = predictions[predictions["split"] == "test_openset"].copy()
    openset["split"] = "val_openset"
    openset["sha256"] = "v" + openset["sha256"]
    return pd.concat([predictions, openset], ignore_index=True)


def _negatives_source(table):
    rng = np.random.default_rng(5)
    vocabulary = rng.normal(size=(40, 4))
    shares = (np.arange(40) + 1) / 40

    def negatives(method, seed, rows, largest):
        kept = shares <= largest
        features = np.stack(rows["embedding"].to_numpy())
        unit = vocabulary / np.linalg.norm(vocabulary, axis=1, keepdims=True)
        logits = LOGIT_SCALE * features @ unit.T
        return Negatives(logits[:, kept], shares[kept])

    return negatives


GRID = EvaluationConfig(scores={"neglabel": {"share": [0.25, 1.0], "groups": [1, 4]}})


def test_grid_is_chosen_on_validation_only():
    """Replacing every test split with noise changes the test scores, not the chosen point."""
    predictions = _with_openset_validation(synthetic_predictions(seeds=(1,)))
    scored, choices = score_predictions(
        predictions, LOGIT_SCALE, GRID, _negatives_source(predictions)
    )
    noisy = predictions.copy()
    test = noisy["split"].str.startswith("test_")
    rng = np.random.default_rng(9)
    noisy.loc[test, "logits"] = pd.Series(
        [list(rng.normal(size=3)) for _ in range(test.sum())], index=noisy.index[test]
    )
    noisy.loc[test, "embedding"] = pd.Series(
        [list(rng.normal(size=4)) for _ in range(test.sum())], index=noisy.index[test]
    )
    noisy_scored, noisy_choices = score_predictions(
        noisy, LOGIT_SCALE, GRID, _negatives_source(noisy)
    )
    assert choices == noisy_choices
    assert not np.allclose(scored["score_neglabel"], noisy_scored["score_neglabel"])
    assert {c["method"] for c in choices} == {"zero_shot", "croft_clean"}
    assert all(len(c["grid"]) == 4 and c["chosen_on"].startswith("AUROC val") for c in choices)
    best = max(choices[0]["grid"], key=lambda point: point["auroc"])
    assert choices[0]["params"] == best["params"]
    assert set(scored["split"]) == {"test_id", "test_covariate", "test_openset"}


def test_without_openset_validation_the_grid_falls_back_to_the_papers_values():
    predictions = synthetic_predictions(seeds=(1,))
    config = EvaluationConfig(scores={"neglabel": {"share": [0.5, 0.15], "groups": [2, 4]}})
    _, choices = score_predictions(predictions, LOGIT_SCALE, config, _negatives_source(None))
    assert {c["chosen_on"] for c in choices} == {"fallback: no OOD validation rows"}
    assert all(c["params"] == {"share": 0.15, "groups": 2} for c in choices)
