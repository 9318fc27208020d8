"""A real CLIP architecture end to end, no download: open_clip's ``ViT-B-16`` with random (seeded)
weights saved as a local ``.safetensors`` file, named by ``clip.pretrained``, through the real
ingest -> pretrain -> embed -> train -> evaluate pipelines on a tiny photo folder.

The pretrain node trains nothing for an external checkpoint; it only describes the model. What
this checks is what the tiny project CLIP cannot: the 512-d features and 224 px preprocessing of a
ViT, and the checkpoint's identity (its sha256) in the spec, the feature tables and the cache.
Kept cheap on 2 CPU cores: 14 images, one augmented view, one seed, three methods."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import open_clip
import pytest
import torch
import yaml
from safetensors.torch import save_file

from croft_pipeline.common.features import FeatureTable
from croft_pipeline.common.files import sha256_file
from croft_pipeline.pipeline_registry import PIPELINE_ORDER
from tests.data.image_factory import write_image
from tests.kedro_harness import REPO_ROOT, make_project_copy, run_pipeline
from tests.network_guard import loopback_only
from tests.pipelines.test_folder_dataset import override

ENV = "vit"
MODEL = "ViT-B-16"
ID_CLASSES = ["ball", "box", "tent"]  # sorted: inferred as the classes in every domain
OPENSET_CLASS = "nut"
SOURCE, HELDOUT = "photo", "sketch"
# images per domain and class: 3 in the source domain leave val, test_id and train one each;
# the held-out domain is the covariate test, whole
IMAGES = {
    SOURCE: {**dict.fromkeys(ID_CLASSES, 3), OPENSET_CLASS: 1},
    HELDOUT: {**dict.fromkeys(ID_CLASSES, 1), OPENSET_CLASS: 1},
}
METHODS = ["zero_shot", "linear_probe", "croft_clean"]  # croft_clean: the registered method


def write_random_vit(path: Path, seed: int = 7) -> Path:
    """open_clip's ``MODEL`` with seeded random weights, as a plain safetensors state dict."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(MODEL)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_photos(root: Path) -> int:
    """``root/<domain>/<class>/<i>.png``: small distinct noise images (CLIP resizes them)."""
    count = 0
    for domain, classes in IMAGES.items():
        for name, n in classes.items():
            for i in range(n):
                write_image(root / domain / name / f"{i}.png", 1_000 + count, size=(40, 32))
                count += 1
    return count


def add_vit_env(project: Path, photos: Path, checkpoint: Path) -> None:
    """``conf/vit`` = the tiny `test` env reading ``photos``, with ``clip`` the ViT checkpoint."""
    env = shutil.copytree(REPO_ROOT / "conf" / "test", project / "conf" / ENV)
    (env / "parameters.yml").write_text(yaml.safe_dump({"seeds": [1]}))
    folder = {
        "source": "folder",
        "roots": {"main": str(photos)},
        "sources": [{"root": "main", "layout": "domains", "role": "auto"}],
        "dataset": {"openset_classes": [OPENSET_CLASS], "heldout_domain": HELDOUT},
    }
    override(env, "ingest", folder)
    # two threads: ~17 GFLOP an image; inference gives the same features on 1 and 2 threads
    override(env, "clip", {"model_name": MODEL, "pretrained": str(checkpoint), "num_threads": 2})
    override(env, "embed", {"n_views": 1})
    override(env, "train", {"methods": METHODS})
    override(env, "evaluate", {"comparisons": {"draws": 200}})


def _side(preprocessing: dict) -> int:
    """The square input side of a view recipe's preprocessing (open_clip: an int or [h, w])."""
    size = preprocessing["preprocess"]["size"]
    height, width = (size, size) if isinstance(size, int) else size
    assert height == width, size
    return height


def _json(project: Path, path: str) -> dict:
    return json.loads((project / path).read_text())


@pytest.fixture
def vit_checkpoint(tmp_path) -> Iterator[Path]:
    """The random ViT-B-16 checkpoint; afterwards it and its copy in the MLflow store (600 MB
    each) are deleted, so the tmp folders pytest keeps stay small."""
    yield write_random_vit(tmp_path / "vit_b16_random.safetensors")
    for path in tmp_path.rglob("*.safetensors"):
        if path.stat().st_size > 100 * 2**20:
            path.unlink()


@pytest.mark.slow
def test_vit_b16_safetensors_checkpoint_runs_every_pipeline(tmp_path, vit_checkpoint):
    checkpoint = vit_checkpoint
    digest = sha256_file(checkpoint)
    project = make_project_copy(tmp_path / "project")
    n_images = write_photos(tmp_path / "photos")
    add_vit_env(project, tmp_path / "photos", checkpoint)

    with loopback_only() as attempts:
        for pipeline in PIPELINE_ORDER:
            run_pipeline(project, pipeline, env=ENV)
    assert attempts == []

    # pretrain trained nothing and described the file it was given
    report = _json(project, "data/08_reporting/clip_pretrain.json")
    assert not report["trained"] and not report["reused"]
    assert not (project / "data/06_models/clip").exists()
    spec = _json(project, "data/06_models/clip_model_spec.json")
    assert spec["model_name"] == MODEL and spec["pretrained"] == str(checkpoint)
    assert spec["checkpoint_sha256"] == digest and not spec["trained_here"]
    assert spec["chance_accuracy"] == pytest.approx(1 / len(ID_CLASSES))

    # embed: 512-d ViT-B-16 features of every image, computed at 224 px, keyed to the checkpoint
    features = project / "data/04_feature"
    center = FeatureTable.load(features / "image_features_center.safetensors")
    views = FeatureTable.load(features / "image_features_train_views.safetensors")
    text = FeatureTable.load(features / "text_features.safetensors")
    assert center.features.shape == (n_images, 1, 512)
    assert views.features.shape == (len(ID_CLASSES), 1, 512)  # one train image per class
    assert text.keys == ID_CLASSES and text.features.shape == (len(ID_CLASSES), 1, 512)
    for table in (center, views, text):
        assert torch.isfinite(table.features).all()
        assert table.meta["checkpoint_sha256"] == digest and table.meta["model_name"] == MODEL
    for table in (center, views):
        assert _side(table.meta["preprocessing"]) == 224
    infos = [json.loads(p.read_text()) for p in (features / "cache").rglob("info.json")]
    image_infos = [info for info in infos if info["recipe"] != "text-v1"]
    assert len(image_infos) == 2  # the center and the augmented views' folders
    assert len(infos) == 3  # and the negative labels' prompt features
    for info in infos:
        assert info["model"]["checkpoint_sha256"] == digest
    for info in image_infos:
        assert _side(info["recipe"]) == 224

    # train fitted every method on those features
    summary = _json(project, "data/06_models/train_summary.json")
    assert set(METHODS) <= set(summary["methods"])
    assert summary["id_classes"] == ID_CLASSES
    for name in METHODS[1:]:
        adapter = project / f"data/06_models/adapters/{name}/seed_1.safetensors"
        assert adapter.is_file(), name
        assert summary["methods"][name]["seeds"]["1"]["best_val_accuracy"] >= 0.0

    # evaluate wrote finite metrics for every method and registered the served model
    metrics = _json(project, "data/08_reporting/metrics.json")
    assert set(METHODS) <= set(metrics)
    assert all(math.isfinite(v) for entry in metrics.values() for v in entry.values())
    registration = _json(project, "data/08_reporting/model_registration.json")
    assert registration["registered"] and registration["clip_checkpoint_bundled"]
