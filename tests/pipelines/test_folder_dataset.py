"""A user's photo folder with the project's own CLIP: `kedro run --env=<folder env>` end to end.

A folder has no captions, so the default CLIP trains on EmojiShift's pretraining pairs (rendered
for it): a checkpoint a default run trained has the same stamp and is reused (architecture §9)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from croft_pipeline.pipeline_registry import pipelines_from
from tests.data.image_factory import SCENE_DOMAINS, build_scene_tree
from tests.kedro_harness import REPO_ROOT, copy_with_store, make_project_copy, run_pipeline

ENV = "photos"
ID_CLASSES = ["ball", "box", "stick", "tent"]  # sorted: inferred as the classes in every domain
OPENSET_CLASS = "nut"
CHECKPOINT = "data/06_models/clip/clip_pretrained.safetensors"
PHOTOS = "photos"  # the folder's name, and so its registered model's: croft-clip-photos


def add_folder_env(project: Path, photos: Path) -> None:
    """``conf/photos`` = the tiny `test` env with ingest reading ``photos`` (3 domains, sketch
    held out; 4 ID classes and an open-set one, 5 scenes each in JPEG/PNG and 5 PIL modes),
    four methods (zero-shot, a baseline, CRoFT and its ablation) and fewer bootstrap draws."""
    build_scene_tree(photos, [*ID_CLASSES, OPENSET_CLASS], per_class=5)
    env = shutil.copytree(REPO_ROOT / "conf" / "test", project / "conf" / ENV)
    folder = {
        "source": "folder",
        "roots": {"main": str(photos)},
        "sources": [{"root": "main", "layout": "domains", "role": "auto"}],
        "dataset": {"openset_classes": [OPENSET_CLASS], "heldout_domain": "sketch"},
    }
    override(env, "ingest", folder)
    override(
        env, "train", {"methods": ["zero_shot", "linear_probe", "croft_no_edr", "croft_clean"]}
    )
    override(env, "evaluate", {"comparisons": {"draws": 200}})


def override(env: Path, block: str, values: dict) -> None:
    """Set top-level keys of ``block`` in the env's ``parameters_<block>.yml``."""
    path = env / f"parameters_{block}.yml"
    params = yaml.safe_load(path.read_text())
    params[block].update(values)
    path.write_text(yaml.safe_dump(params))


def reporting(project: Path, name: str) -> dict:
    return json.loads((project / "data/08_reporting" / name).read_text())


@pytest.mark.slow
def test_folder_env_runs_end_to_end_with_the_embedded_clip(tmp_path):
    project = make_project_copy(tmp_path / "project")
    add_folder_env(project, tmp_path / "photos")
    run_pipeline(project, "__default__", env=ENV)

    manifest = pd.read_parquet(project / "data/02_intermediate/manifest.parquet")
    assert set(manifest["domain"]) == set(SCENE_DOMAINS)
    assert set(manifest["mode"]) == {"RGB", "L", "CMYK", "RGBA", "P"}
    assert json.loads((project / "data/03_primary/id_classes.json").read_text()) == ID_CLASSES
    pretrained = reporting(project, "clip_pretrain.json")
    assert pretrained["trained"] and pretrained["pair_source"] == "pretrain.emojishift_roots"
    summary = pd.read_csv(project / "data/08_reporting/evaluation_summary.csv")
    assert {"id", "covariate", "openset"} <= set(summary["shift"])
    registration = reporting(project, "model_registration.json")
    assert registration["registered"] and registration["clip_checkpoint_bundled"]
    store = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    candidate = client.get_model_version_by_alias(registration["model_name"], "candidate")
    assert str(candidate.version) == str(registration["version"])


@pytest.mark.slow
def test_folder_env_reuses_the_checkpoint_a_default_run_trained(tiny_project, tmp_path):
    project = copy_with_store(tiny_project, tmp_path / "project")
    add_folder_env(project, tmp_path / PHOTOS)
    written = (project / CHECKPOINT).stat().st_mtime_ns
    run_pipeline(project, "ingest", env=ENV)
    run_pipeline(project, "pretrain", env=ENV)
    report = reporting(project, "clip_pretrain.json")
    assert report["reused"] and not report["trained"]
    assert report["stamp"] == reporting(tiny_project, "clip_pretrain.json")["stamp"]
    assert (project / CHECKPOINT).stat().st_mtime_ns == written

    # the rest of the run registers the folder's model under its own name: one registry per
    # dataset, so the EmojiShift model of the default run keeps its versions and aliases
    before = _registry(project)
    for pipeline in pipelines_from("embed"):
        run_pipeline(project, pipeline, env=ENV)
    after = _registry(project)
    registration = reporting(project, "model_registration.json")
    assert registration["model_name"] == f"croft-clip-{PHOTOS}"
    assert before["croft-clip"] == after["croft-clip"]
    assert f"croft-clip-{PHOTOS}" not in before
    assert after[f"croft-clip-{PHOTOS}"] == {
        "versions": ["1"],
        "aliases": {
            "candidate": "1",
            **({"champion": "1"} if registration["gates_passed"] else {}),
        },
    }


def _registry(project: Path) -> dict[str, dict]:
    """Every registered model of the project's store: its versions and aliases."""
    store = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    return {
        model.name: {
            "versions": sorted(
                str(v.version) for v in client.search_model_versions(f"name='{model.name}'")
            ),
            "aliases": {alias: str(number) for alias, number in model.aliases.items()},
        }
        for model in client.search_registered_models()
    }
