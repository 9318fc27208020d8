"""The train nodes on synthetic cached features (Kedro-free): contracts of their outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from croft_pipeline.common.features import FeatureTable
from croft_pipeline.methods import METHODS, build_method, selection
from croft_pipeline.methods.params import method_config, method_grids
from croft_pipeline.methods.selection import grid_points
from croft_pipeline.pipelines.calibrate.nodes import calibrate as calibrate_node
from croft_pipeline.pipelines.train import nodes
from tests.kedro_harness import load_params
from tests.methods.synthetic import CLASSES, DIM, synthetic_tables

PREDICTION_COLUMNS = [
    "method",
    "seed",
    "split",
    "sha256",
    "domain",
    "class_name",
    "group",
    "label",
    "logits",
    "embedding",
]


def train_params():
    return load_params("test")["train"]


def evaluate_params():
    return load_params("test")["evaluate"]


@pytest.fixture(scope="module")
def trained():
    splits, center, views, text = synthetic_tables()
    params = train_params()
    weights, summary, _ = nodes.fit_methods(splits, center, views, text, CLASSES, params, [1, 2])
    blobs = {key: save(state) for key, state in weights.items()}
    stored = {key: (lambda b=blob: load(b)) for key, blob in blobs.items()}  # lazy loaders
    predictions = nodes.predict_splits(splits, center, text, stored, summary)
    evaluate = evaluate_params()
    calibration = calibrate_node(
        predictions,
        summary,
        load_params("test")["calibrate"],
        evaluate["scores"],
        evaluate["knn_bank_split"],
    )
    return splits, center, text, params, weights, summary, predictions, calibration


WISE = {f"{name}+wise" for name in METHODS if METHODS[name].trains}


def test_summary_and_weights_cover_every_method_and_seed(trained):
    splits, center, text, params, weights, summary, _, _ = trained
    assert summary.logit_scale == 20.0 and summary.id_classes == CLASSES
    assert set(params["methods"]) == set(METHODS)
    assert set(summary.methods) == set(METHODS) | WISE
    grids = method_grids(params, params["methods"])
    for name in METHODS:
        entry = summary.methods[name]
        assert set(entry.seeds) == {1, 2}
        for seed, run in entry.seeds.items():
            assert run.adapter == f"{name}/seed_{seed}"
            assert f"{name}/seed_{seed}" in weights
            points = grid_points(grids[name])
            assert [row["point"] for row in run.grid] == points  # every point tried, recorded
            if METHODS[name].trains:  # the kept point is the best on validation (first on ties)
                accuracies = [row["val_accuracy"] for row in run.grid]
                assert run.best_val_accuracy == max(accuracies)
                kept = points[accuracies.index(max(accuracies))]
                assert {k: run.config[k] for k in kept} == kept
            assert run.config == {
                **method_config(params, name),
                **points[0],
                **{k: run.config[k] for k in grids[name]},
            }


def test_selection_never_reads_a_test_split(trained):
    """Replace every test split's features with noise: the selected points, epochs, weights and
    WiSE-FT alphas stay the same (only the oracle numbers, recorded for the report, change)."""
    splits, center, text, params, weights, summary, _, _ = trained
    views = synthetic_tables()[2]
    oracle_changed = False
    for seed in (1, 2):  # an image can be a test image in one seed and a val image in another
        rows = splits[splits["seed"] == seed]
        noise = torch.Generator().manual_seed(seed)
        scrambled = center.features.clone()
        index = center.index_of()
        for key in rows.loc[rows["split"].str.startswith("test"), "sha256"]:
            scrambled[index[key]] = 50 * torch.randn(scrambled.shape[1:], generator=noise)
        poisoned = FeatureTable(center.keys, scrambled, center.meta)
        again, again_summary, _ = nodes.fit_methods(
            splits, poisoned, views, text, CLASSES, params, [seed]
        )
        for key, state in again.items():
            assert all(torch.equal(weights[key][k], state[k]) for k in state), key
        for name, entry in again_summary.methods.items():
            run, other = summary.methods[name].seeds[seed], entry.seeds[seed]
            for field in ("config", "best_epoch", "best_val_accuracy", "alpha"):
                assert getattr(run, field, None) == getattr(other, field, None), (name, seed, field)
            oracle_changed |= getattr(run, "oracle", None) != getattr(other, "oracle", None)
    assert oracle_changed  # the probes did read the (scrambled) test splits


def test_stacked_grids_select_the_points_of_single_fits(trained, monkeypatch):
    """Each grid trained as one stack (the default) and each grid point fitted alone (a stack of
    one) keep the same point, epoch and accuracies, with weights equal to float32 rounding."""
    splits, center, text, params, weights, summary, _, _ = trained
    assert params["workers"] == 1  # the fits run in this process, where the patch holds
    views = synthetic_tables()[2]
    monkeypatch.setattr(
        selection,
        "fit_points",
        lambda methods, train, val: [
            selection.fit_or_error(method, train, val) for method in methods
        ],
    )
    again, again_summary, _ = nodes.fit_methods(
        splits, center, views, text, CLASSES, params, [1, 2]
    )
    for name, entry in again_summary.methods.items():
        for seed, run in entry.seeds.items():
            other = summary.methods[name].seeds[seed]
            for field in ("config", "best_epoch", "best_val_accuracy", "alpha", "grid"):
                assert getattr(run, field, None) == getattr(other, field, None), (name, seed, field)
    for key, state in again.items():
        torch.testing.assert_close(weights[key], state, rtol=1e-4, atol=1e-5)


def test_predictions_follow_the_contract(trained):
    splits, center, _, _, weights, summary, predictions, _ = trained
    assert list(predictions.columns) == PREDICTION_COLUMNS
    per_run = splits.groupby("seed").size()
    counts = predictions.groupby(["method", "seed"]).size()
    assert all(counts[(m, s)] == per_run[s] for m, s in counts.index)
    assert len(counts) == (len(METHODS) + len(WISE)) * 2
    assert set(predictions["split"]) == set(splits["split"])  # every split is predicted
    assert {len(v) for v in predictions["logits"]} == {len(CLASSES)}
    assert {len(v) for v in predictions["embedding"]} == {DIM}
    assert (predictions.loc[predictions["split"] == "test_openset", "label"] == -1).all()
    # the rows are the logits of the method rebuilt from its summary entry and weights
    rows = predictions[(predictions["method"] == "croft_faithful") & (predictions["seed"] == 1)]
    run = summary.methods["croft_faithful"].seeds[1]
    method = build_method("croft_faithful", run.config, trained[2].features[:, 0], 20.0, 1)
    method.load_state_dict(weights["croft_faithful/seed_1"])
    features = center.select(rows["sha256"].tolist())[:, 0]
    assert np.array_equal(np.stack(rows["logits"].to_numpy()), method.logits(features).numpy())


def test_calibration_fixes_the_threshold_on_validation_only(trained):
    *_, predictions, calibration = trained
    assert set(calibration) == set(METHODS) | WISE
    for name, seeds in calibration.items():
        for seed, entry in seeds.items():
            val = predictions[
                (predictions["method"] == name)
                & (predictions["seed"] == int(seed))
                & (predictions["split"] == "val")
            ]
            energy = torch.logsumexp(
                torch.tensor(np.stack(val["logits"].to_numpy()), dtype=torch.float64), 1
            )
            assert entry["score"] == "energy"
            assert entry["val_tpr"] >= 0.95 and entry["n_val"] == len(val)
            assert entry["val_tpr"] == pytest.approx(
                float((energy >= entry["threshold"]).double().mean())
            )
            assert entry["threshold"] in set(energy.tolist())


def test_fit_is_deterministic_in_one_or_two_processes_and_bad_inputs_are_named():
    splits, center, views, text = synthetic_tables(seeds=(1,))
    params = {**train_params(), "methods": ["croft_clean", "tip_adapter_f"]}
    first, *_ = nodes.fit_methods(splits, center, views, text, CLASSES, params, [1])
    in_workers = {**params, "workers": 2}  # two spawned processes, one job each
    second, *_ = nodes.fit_methods(splits, center, views, text, CLASSES, in_workers, [1])
    assert first.keys() == second.keys()
    for key in first:
        assert all(torch.equal(first[key][k], second[key][k]) for k in first[key])
    with pytest.raises(ValueError, match="not the ID classes in label order"):
        nodes.fit_methods(splits, center, views, text, CLASSES[::-1], params, [1])
    with pytest.raises(ValueError, match="no 'train' rows for seed 7"):
        nodes.fit_methods(splits, center, views, text, CLASSES, params, [7])
    with pytest.raises(KeyError, match="train.methods names 'nope'"):
        nodes.fit_methods(
            splits, center, views, text, CLASSES, {**params, "methods": ["nope"]}, [1]
        )


def test_knn_k_above_the_bank_fails_before_any_fit(monkeypatch):
    """The bank (the seed's train rows) is known from the splits: fail before fitting anything."""
    splits, center, views, text = synthetic_tables()
    bank = int(((splits["seed"] == 1) & (splits["split"] == "train")).sum())
    monkeypatch.setattr(nodes, "fit_all", lambda *a, **k: pytest.fail("fit before the check"))
    scores = {**evaluate_params()["scores"], "knn": {"k": bank + 1}}
    with pytest.raises(ValueError) as info:
        nodes.fit_methods(
            splits, center, views, text, CLASSES, train_params(), [1], scores, "train"
        )
    assert str(info.value).startswith("evaluate.scores.knn.k (seed 1, split 'train') must be <=")
    assert f"({bank} ID feature rows), got {bank + 1}" in str(info.value)
