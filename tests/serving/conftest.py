"""A tiny served model: a random-init project CLIP saved as a checkpoint, an adapter method,
text features and a few rendered images; plus an isolated MLflow store."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from croft_pipeline.clip.backend import encode_class_prompts, encode_images, load_clip
from croft_pipeline.clip.views import CENTER
from croft_pipeline.methods import build_method

CLASSES = ["circle", "square", "triangle"]
MODEL_NAME = "CroftRN-Tiny-32"
METHOD_CONFIG = {
    "device": "cpu",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "epochs": 1,
    "warmup_epochs": 0,
    "warmup_lr": 0.0,
    "batch_size": 8,
    "ratio": 0.2,
    "reduction": 4,
}


@dataclass
class TinyModel:
    checkpoint: Path
    text_features: torch.Tensor  # [K, D]
    logit_scale: float
    method: object
    images: list[Path]
    features: torch.Tensor  # raw CLIP features of `images`
    energy: torch.Tensor
    threshold: float

    def bundle_config(self) -> dict:
        return {
            "model_name": MODEL_NAME,
            "pretrained": str(self.checkpoint),
            "precision": "fp32",
            "method": "clip_adapter",
            "method_config": METHOD_CONFIG,
            "seed": 0,
            "logit_scale": self.logit_scale,
            "class_names": CLASSES,
            "threshold": self.threshold,
            "score": "energy",
            "device": "cpu",
        }


def draw_images(folder: Path, count: int = 6) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = Image.new("RGB", (48, 40), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        box = (4 + index, 4, 30 + 2 * index, 34)
        [draw.ellipse, draw.rectangle, draw.polygon][index % 3](
            box if index % 3 != 2 else [(24, 4), (4, 36), (44, 36)], fill=(40 * index, 80, 200)
        )
        path = folder / f"shape_{index}.png"
        image.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> TinyModel:
    folder = tmp_path_factory.mktemp("tiny_model")
    random_clip = load_clip(MODEL_NAME, None, device="cpu")
    checkpoint = folder / "clip.safetensors"
    save_file(
        {k: v.contiguous() for k, v in random_clip.model.state_dict().items()}, str(checkpoint)
    )
    loaded = load_clip(MODEL_NAME, str(checkpoint), device="cpu")
    text_features = encode_class_prompts(loaded, CLASSES, "a drawing of a {}.")
    method = build_method("clip_adapter", METHOD_CONFIG, text_features, loaded.logit_scale, seed=0)
    images = draw_images(folder / "images")
    recipe = loaded.view_recipe(CENTER)
    features = encode_images(loaded, torch.stack([recipe(Image.open(p)) for p in images]))
    energy = torch.logsumexp(method.logits(features).double(), dim=1)
    return TinyModel(
        checkpoint=checkpoint,
        text_features=text_features,
        logit_scale=loaded.logit_scale,
        method=method,
        images=images,
        features=features,
        energy=energy,
        threshold=float(energy.median()),
    )


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database with every migration applied (copied per test: fast)."""
    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    uri = f"sqlite:///{path}"
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    return path


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch, migrated_mlflow_db):
    """A fresh SQLite tracking/registry store and experiment, with artifacts under tmp_path."""
    shutil.copy2(migrated_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment(
        "tests", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
