"""The typed train summary: integer seeds in memory, text keys in its JSON, a lossless round trip."""

from __future__ import annotations

import json

from croft_pipeline.datasets import TrainSummaryDataset
from croft_pipeline.methods.train_summary import MethodSummary, SeedFit, SeedWise, TrainSummary

FIT = SeedFit(
    config={"lr": 0.01, "device": "cpu"},
    best_epoch=3,
    best_val_accuracy=0.75,
    zero_shot_val_accuracy=0.5,
    history=[{"epoch": 0, "val_accuracy": 0.5, "lr": 1e-5}],
    grid=[{"point": {"lr": 0.01}, "val_accuracy": 0.75, "probe": {"test_covariate": 0.6}}],
    oracle={"point": {"lr": 0.01}, "test_covariate": 0.6},
    adapter="croft_clean/seed_7",
)
SUMMARY = TrainSummary(
    logit_scale=21.6,
    id_classes=["cat", "dog"],
    methods={
        "croft_clean": MethodSummary(mode="clean", grid={"lr": [0.01]}, seeds={7: FIT, 12: FIT}),
        "croft_clean+wise": MethodSummary(
            mode="clean",
            base="croft_clean",
            space="weight",
            seeds={7: SeedWise(config=FIT.config, alpha=0.5, best_val_accuracy=0.8)},
        ),
    },
)


def test_seeds_are_text_keys_only_in_the_json_document(tmp_path):
    document = SUMMARY.to_dict()
    assert list(document["methods"]["croft_clean"]["seeds"]) == ["7", "12"]
    assert list(document["methods"]["croft_clean"]) == ["mode", "grid", "seeds"]
    assert list(document["methods"]["croft_clean+wise"]) == ["mode", "base", "space", "seeds"]
    dataset = TrainSummaryDataset(str(tmp_path / "train_summary.json"))
    dataset.save(SUMMARY)
    assert json.loads((tmp_path / "train_summary.json").read_text()) == document
    loaded = dataset.load()
    assert loaded == SUMMARY and list(loaded.methods["croft_clean"].seeds) == [7, 12]
    assert loaded.methods["croft_clean+wise"].is_wise and not loaded.methods["croft_clean"].is_wise


def test_the_kept_points_probe_is_its_grid_row():
    assert FIT.probe() == {"test_covariate": 0.6}
    assert SeedFit(config={"lr": 0.5}, best_val_accuracy=0.1, grid=FIT.grid).probe() == {}
