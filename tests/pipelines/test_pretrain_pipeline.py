"""The pretrain pipeline in the shared tiny run: a checkpoint open_clip loads, a model spec with
zero-shot accuracy per style; a rerun reuses the checkpoint; an external checkpoint trains nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import open_clip
import pandas as pd
import pytest

from croft_pipeline.clip.configs import register_project_configs
from croft_pipeline.common.files import sha256_file
from tests.kedro_harness import copy_with_store, load_params, run_pipeline

REPO = Path(__file__).resolve().parents[2]


def _clip_params() -> dict:
    return load_params("test")["clip"]


@pytest.fixture(scope="module")
def spec(tiny_project) -> dict:
    return json.loads((tiny_project / "data/06_models/clip_model_spec.json").read_text())


def test_checkpoint_loads_with_open_clip_and_matches_the_spec(tiny_project, spec):
    checkpoint = tiny_project / spec["pretrained"]
    assert checkpoint.suffix == ".safetensors"
    assert spec["checkpoint_sha256"] == sha256_file(checkpoint)
    register_project_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(
        spec["model_name"], pretrained=str(checkpoint)
    )
    assert model.visual.image_size == (32, 32) or model.visual.image_size == 32


def test_spec_reports_zero_shot_accuracy_per_style_on_downstream_images(tiny_project, spec):
    splits = pd.read_parquet(tiny_project / "data/03_primary/splits.parquet")
    styles = set(splits.loc[splits["split"].isin(["test_id", "test_covariate"]), "domain"])
    accuracy = spec["zero_shot_accuracy"]
    assert set(accuracy) == styles | {"mean"}
    assert all(0.0 <= value <= 1.0 for value in accuracy.values())
    assert spec["chance_accuracy"] == pytest.approx(
        1 / len(json.loads((tiny_project / "data/03_primary/id_classes.json").read_text()))
    )
    pretrain_shas = set(
        pd.read_parquet(tiny_project / "data/03_primary/pretrain_pairs.parquet")["sha256"]
    )
    assert not pretrain_shas & set(splits["sha256"])  # evaluated images were never pretrained on


def test_rerun_reuses_the_checkpoint(tiny_project, tmp_path):
    project = copy_with_store(tiny_project, tmp_path / "project")
    checkpoint = project / "data/06_models/clip/clip_pretrained.safetensors"
    written = checkpoint.stat().st_mtime_ns
    run_pipeline(project, "pretrain", env="test")
    report = json.loads((project / "data/08_reporting/clip_pretrain.json").read_text())
    assert report["reused"] and not report["trained"]
    assert checkpoint.stat().st_mtime_ns == written


def test_external_checkpoint_trains_nothing_and_passes_the_spec_on(tiny_project, tmp_path):
    project = copy_with_store(tiny_project, tmp_path / "project")
    external = shutil.copy(
        project / "data/06_models/clip/clip_pretrained.safetensors",
        tmp_path / "external.safetensors",
    )
    (project / "data/06_models/clip/clip_pretrained.safetensors").unlink()
    run_pipeline(
        project,
        "pretrain",
        env="test",
        extra_params={"clip": {**_clip_params(), "pretrained": str(external)}},
    )
    report = json.loads((project / "data/08_reporting/clip_pretrain.json").read_text())
    spec = json.loads((project / "data/06_models/clip_model_spec.json").read_text())
    assert not report["trained"] and not report["reused"]
    assert not (project / "data/06_models/clip/clip_pretrained.safetensors").exists()
    assert spec["pretrained"] == str(external) and spec["checkpoint_sha256"] == sha256_file(
        external
    )
    assert not spec["trained_here"]
