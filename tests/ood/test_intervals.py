"""The paired two-level bootstrap interval against hand cases, scipy and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import roc_auc_score

from croft_pipeline.ood.intervals import (
    PairedUnit,
    auroc_metric,
    beyond_noise,
    mean_metric,
    paired_bootstrap,
)


def _acc_unit(a, b):
    return PairedUnit((np.asarray(a, float),), (np.asarray(b, float),))


def test_identical_methods_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    units = [_acc_unit(x, x) for x in (rng.random(50) < 0.5 for _ in range(3))]
    interval = paired_bootstrap(units, mean_metric, draws=500)
    assert (interval.difference, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert beyond_noise(interval.low, interval.high) == 0


def test_a_constant_per_sample_gain_gives_that_gain_with_no_width():
    # method A is right on every sample, B on none: the paired difference is 1 in every resample
    units = [_acc_unit(np.ones(40), np.zeros(40)) for _ in range(3)]
    interval = paired_bootstrap(units, mean_metric, draws=300)
    assert interval.difference == interval.low == interval.high == 1.0
    assert beyond_noise(interval.low, interval.high) == 1 and interval.units == 3


def test_between_unit_variation_hand_case():
    """Two units without any within-unit variation: differences 0 and 1. Resampling 2 units gives
    a mean of 0, 0.5, 1 with probability 1/4, 1/2, 1/4, so the 95% interval is [0, 1]."""
    units = [_acc_unit(np.zeros(30), np.zeros(30)), _acc_unit(np.ones(30), np.zeros(30))]
    interval = paired_bootstrap(units, mean_metric, draws=4000, seed=3)
    assert interval.difference == pytest.approx(0.5)
    assert (interval.low, interval.high) == (0.0, 1.0)


def test_one_unit_matches_scipys_paired_percentile_bootstrap():
    rng = np.random.default_rng(1)
    a = (rng.random(400) < 0.62).astype(float)
    b = np.where(rng.random(400) < 0.8, a, 1 - a)  # paired: B agrees with A on ~80% of samples
    ours = paired_bootstrap([_acc_unit(a, b)], mean_metric, draws=4000, seed=0)
    theirs = bootstrap(
        (a, b),
        lambda x, y: np.mean(x) - np.mean(y),
        paired=True,
        n_resamples=4000,
        method="percentile",
        random_state=0,
        vectorized=False,
    ).confidence_interval
    assert ours.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert ours.low == pytest.approx(theirs.low, abs=0.01)
    assert ours.high == pytest.approx(theirs.high, abs=0.01)


def test_weighted_auroc_equals_scikit_learn_on_the_resampled_data():
    rng = np.random.default_rng(2)
    pos = rng.normal(1.0, 1.0, 60).round(1)  # rounding makes ties
    neg = rng.normal(0.0, 1.0, 80).round(1)
    w_pos, w_neg = (
        rng.integers(0, 3, (1, 60)).astype(float),
        rng.integers(0, 3, (1, 80)).astype(float),
    )
    expected = roc_auc_score(
        np.r_[np.ones(int(w_pos.sum())), np.zeros(int(w_neg.sum()))],
        np.r_[np.repeat(pos, w_pos[0].astype(int)), np.repeat(neg, w_neg[0].astype(int))],
    )
    assert auroc_metric([pos, neg], [w_pos, w_neg])[0] == pytest.approx(expected)
    ones = [np.ones((1, 60)), np.ones((1, 80))]
    assert auroc_metric([pos, neg], ones)[0] == pytest.approx(
        roc_auc_score(np.r_[np.ones(60), np.zeros(80)], np.r_[pos, neg])
    )


def test_unpaired_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="same non-empty set of samples"):
        _acc_unit(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="at least one unit"):
        paired_bootstrap([], mean_metric)


def test_images_shared_by_units_are_resampled_together():
    """Two seeds scored on the same open-set images: their test-set noise is common to both, so
    the interval keeps the one-unit width. Two independent test sets narrow it: to sqrt(3/4) of
    it here, since a draw of two units picks the same unit twice half of the time."""
    rng = np.random.default_rng(4)
    a = (rng.random(300) < 0.6).astype(float)
    b = np.where(rng.random(300) < 0.7, a, 1 - a)
    keys = np.arange(300)

    def width(units):
        interval = paired_bootstrap(units, mean_metric, draws=3000, seed=1)
        return interval.high - interval.low

    one = width([PairedUnit((a,), (b,), (keys,))])
    shared = width([PairedUnit((a,), (b,), (keys,)), PairedUnit((a,), (b,), (keys,))])
    separate = width([PairedUnit((a,), (b,), (keys,)), PairedUnit((a,), (b,), (keys + 300,))])
    assert shared == pytest.approx(one, rel=0.1)
    assert separate == pytest.approx(np.sqrt(0.75) * one, rel=0.06)


def test_beyond_noise_reads_the_interval():
    assert [beyond_noise(0.1, 0.3), beyond_noise(-0.3, -0.1), beyond_noise(-0.1, 0.2)] == [1, -1, 0]


def _pinned_units():
    rng = np.random.default_rng(7)
    keys = np.arange(40)
    accuracy = [
        PairedUnit(
            ((rng.random(40) < p).astype(float),), ((rng.random(40) < 0.5).astype(float),), (keys,)
        )
        for p in (0.5, 0.6, 0.7, 0.8)
    ]
    auroc = [
        PairedUnit(
            (rng.integers(0, 5, 20).astype(float), rng.integers(0, 4, 30).astype(float)),
            (rng.integers(0, 4, 20).astype(float), rng.integers(0, 4, 30).astype(float)),
        )
        for _ in range(3)
    ]
    return accuracy, auroc


def test_without_clusters_the_interval_is_the_one_stage_bootstraps_bit_for_bit():
    """The numbers of the one-stage bootstrap before clusters existed (integer counts and 0/1 or
    integer scores make every sum exact, so they are the same bits on any machine); a single
    cluster is the same resampling and gives the same bits too."""
    accuracy, auroc = _pinned_units()
    pinned = {
        "accuracy": (0.28125, 0.08695652173913043, 0.4723069105691056),
        "auroc": (0.046944444444444455, -0.134498755521153, 0.24090578116297684),
    }
    cases = {"accuracy": (accuracy, mean_metric, 5), "auroc": (auroc, auroc_metric, 6)}
    for name, (units, metric, seed) in cases.items():
        for clusters in (None, ["one"] * len(units)):
            interval = paired_bootstrap(units, metric, draws=600, seed=seed, clusters=clusters)
            assert (interval.difference, interval.low, interval.high) == pinned[name]


def test_clusters_carry_the_spread_between_them():
    """Two backbones of ten units each, no variation inside one: every unit of backbone A differs
    by 0, every unit of B by 1. Resampling the 20 units as one stage averages the backbones away
    (a binomial mean around 0.5); resampling the backbones first draws A twice, A and B, or B
    twice with probability 1/4, 1/2, 1/4: the 95% interval is [0, 1], which holds what either
    backbone gives, and the one-stage interval holds neither."""
    units = [_acc_unit(np.zeros(30), np.zeros(30)) for _ in range(10)] + [
        _acc_unit(np.ones(30), np.zeros(30)) for _ in range(10)
    ]
    clusters = ["A"] * 10 + ["B"] * 10
    flat = paired_bootstrap(units, mean_metric, draws=4000, seed=2)
    clustered = paired_bootstrap(units, mean_metric, draws=4000, seed=2, clusters=clusters)
    assert flat.difference == clustered.difference == pytest.approx(0.5)
    assert (clustered.low, clustered.high) == (0.0, 1.0)
    assert 0.2 < flat.low < 0.5 < flat.high < 0.8
    assert clustered.high - clustered.low > 2 * (flat.high - flat.low)


def test_units_are_resampled_within_each_drawn_cluster_and_pooled():
    """Cluster A: one unit differing by 0; cluster B: three differing by 1. A draw's statistic is
    the mean over the drawn units: (A, A) 0, (A, B) 3/4, (B, B) 1, with probability 1/4, 1/2,
    1/4, so the central 40% of the draws is 3/4 exactly (the mean of the cluster means would
    give 1/2)."""
    units = [_acc_unit(np.zeros(20), np.zeros(20))] + [
        _acc_unit(np.ones(20), np.zeros(20)) for _ in range(3)
    ]
    interval = paired_bootstrap(
        units, mean_metric, draws=4000, level=0.4, seed=0, clusters=["A", "B", "B", "B"]
    )
    assert interval.difference == pytest.approx(0.75)
    assert (interval.low, interval.high) == (0.75, 0.75)


def test_one_unit_clusters_resample_like_one_stage():
    """Every unit its own cluster: drawing clusters is drawing units, so the width is the
    one-stage width (other random numbers, so up to bootstrap noise)."""
    rng = np.random.default_rng(5)
    units = [
        _acc_unit((rng.random(60) < p).astype(float), (rng.random(60) < 0.5).astype(float))
        for p in (0.4, 0.55, 0.7, 0.85)
    ]

    def width(clusters):
        interval = paired_bootstrap(units, mean_metric, draws=4000, seed=3, clusters=clusters)
        return interval.high - interval.low

    assert width(list(range(4))) == pytest.approx(width(None), rel=0.1)


def test_clusters_need_one_label_per_unit():
    with pytest.raises(ValueError, match="3 labels for 2 units"):
        paired_bootstrap([_acc_unit([1.0], [0.0])] * 2, mean_metric, clusters=[0, 1, 1])
