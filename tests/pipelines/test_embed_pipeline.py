"""The embed pipeline: feature tables per docs/architecture.md in the shared tiny run, a cached rerun that
computes nothing, and a run killed part-way (SIGKILL) that resumes to the same features."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from croft_pipeline.clip.backend import load_clip
from croft_pipeline.common.features import FeatureTable
from tests.kedro_harness import (
    clear_outputs,
    copy_project,
    finish_run,
    kill_run,
    load_params,
    run_pipeline,
    start_kedro_run,
)

REPO = Path(__file__).resolve().parents[2]
TABLES = ("image_features_center", "image_features_train_views", "text_features")


def _table(project: Path, name: str) -> FeatureTable:
    return FeatureTable.load(project / f"data/04_feature/{name}.safetensors")


def _chunks(project: Path) -> dict[Path, int]:
    return {
        p: p.stat().st_mtime_ns
        for p in (project / "data/04_feature/cache").rglob("chunk-*.safetensors")
    }


def test_feature_tables_follow_the_contract(tiny_project):
    splits = pd.read_parquet(tiny_project / "data/03_primary/splits.parquet")
    spec = json.loads((tiny_project / "data/06_models/clip_model_spec.json").read_text())
    n_views = load_params("test")["embed"]["n_views"]
    center = _table(tiny_project, "image_features_center")
    assert set(center.keys) == set(splits["sha256"]) and center.n_views == 1
    views = _table(tiny_project, "image_features_train_views")
    assert set(views.keys) == set(splits.loc[splits["split"] == "train", "sha256"])
    assert views.n_views == n_views and views.meta["view"] == "augment"
    assert not torch.allclose(views.features[:, 0], views.features[:, 1])
    text = _table(tiny_project, "text_features")
    assert text.keys == json.loads((tiny_project / "data/03_primary/id_classes.json").read_text())
    for table in (center, views, text):
        assert {k: table.meta[k] for k in ("model_name", "pretrained", "checkpoint_sha256")} == {
            k: spec[k] for k in ("model_name", "pretrained", "checkpoint_sha256")
        }
    assert (
        center.meta["preprocessing"]["kind"] == "center" and "scale" in views.meta["preprocessing"]
    )
    loaded = load_clip(spec["model_name"], spec["pretrained"], device="cpu", base_dir=tiny_project)
    assert text.meta["logit_scale"] == pytest.approx(loaded.logit_scale)


def test_second_run_with_nothing_changed_computes_nothing(tiny_project, tmp_path):
    project = copy_project(tiny_project, tmp_path / "project")
    before = _chunks(project)
    first = {name: _table(project, name) for name in TABLES}
    run_pipeline(project, "embed", env="test")
    assert _chunks(project) == before
    for name in TABLES:
        assert torch.equal(_table(project, name).features, first[name].features)


@pytest.mark.slow
def test_killed_embed_run_resumes_to_the_same_features(tiny_project, tmp_path):
    project = copy_project(tiny_project, tmp_path / "project")
    uninterrupted = {name: _table(project, name) for name in TABLES}
    clear_outputs(project, "embed")
    process = start_kedro_run(project, "embed", tmp_path / "killed.log")
    deadline = time.monotonic() + 300
    while not _chunks(project) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, (
        f"embed ended before it could be killed: {(tmp_path / 'killed.log').read_text()[-2000:]}"
    )
    kill_run(process)
    partial = _chunks(project)
    assert partial, "no cache chunk was written before the kill"
    assert not (project / "data/04_feature/image_features_center.safetensors").exists()
    finish_run(start_kedro_run(project, "embed", tmp_path / "rerun.log"), tmp_path / "rerun.log")
    assert set(partial) <= set(_chunks(project))  # chunks written before the kill were reused
    for name in TABLES:
        resumed = _table(project, name)
        assert resumed.keys == uninterrupted[name].keys
        assert torch.equal(resumed.features, uninterrupted[name].features), name
