"""The files a served model consists of, written and read without pickle.

Artifacts: ``config`` (JSON), ``text_features`` and ``adapter`` (safetensors); for a model
whose CLIP weights are a local file, ``clip_checkpoint`` (that file, bundled as is); for a model
that serves the KNN score, ``knn_bank`` (safetensors: the method's embeddings of the ID features
evaluation compared against, as the predictions table holds them). ``config`` records the
digest of every other file (``files_sha256``; the checkpoint's sha256): loading checks each one,
so a changed or swapped file is an error naming it, never a model served silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import torch

from croft_pipeline.common.files import (
    DIGEST_KEY,
    CorruptFileError,
    atomic_write_bytes,
    load_safetensors,
    recorded_digest,
    save_safetensors,
    sha256_file,
)
from croft_pipeline.methods import restore_method
from croft_pipeline.ood.scores import check_knn_k, score_parameters
from croft_pipeline.serving.inputs import InputPolicy
from croft_pipeline.serving.predictor import CroftPredictor

BUNDLE_FORMAT = 4  # 2: the calibrated score's parameters (score_params); 3: the KNN bank;
# 4: sealed files and their digests (files_sha256)
REREGISTER = "register the model again (`kedro run --pipeline=evaluate`)"
CONFIG_KEYS = (
    "model_name",
    "pretrained",
    "precision",
    "method",
    "method_config",
    "seed",
    "logit_scale",
    "class_names",
    "threshold",
    "score",
    "score_params",
    "device",
)


def write_bundle(
    out_dir: str | os.PathLike,
    config: Mapping[str, Any],
    text_features: torch.Tensor,
    adapter_state: Mapping[str, torch.Tensor],
    checkpoint: str | os.PathLike | None = None,
    knn_bank: torch.Tensor | None = None,
    knn_params: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Write the bundle files into ``out_dir``; returns the MLflow ``artifacts`` mapping.

    ``config`` holds CONFIG_KEYS; ``pretrained`` is a hub tag, or ignored when ``checkpoint``
    (a local CLIP weights file) is given: the file then travels with the model. ``knn_bank``
    (``[M, D]``, the method's embeddings of the bank rows) with ``knn_params`` (``{"k": ...}``)
    adds the ``knn`` score; a model calibrated on ``knn`` needs it.
    """
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError(f"serving bundle config lacks {missing}")
    if text_features.ndim != 2 or text_features.shape[0] != len(config["class_names"]):
        raise ValueError(
            f"text features {tuple(text_features.shape)} do not match "
            f"{len(config['class_names'])} class names"
        )
    knn = _knn_params(config, knn_bank, knn_params, int(text_features.shape[1]))
    out = Path(out_dir)
    files = {
        "text_features": save_safetensors(
            out / "text_features.safetensors", {"text_features": text_features}
        ),
        "adapter": save_safetensors(out / "adapter.safetensors", adapter_state),
    }
    if knn_bank is not None:
        files["knn_bank"] = save_safetensors(out / "knn_bank.safetensors", {"bank": knn_bank})
    document = {
        **{key: config[key] for key in CONFIG_KEYS},
        "format": BUNDLE_FORMAT,
        "embed_dim": int(text_features.shape[1]),
        "bundled_checkpoint": checkpoint is not None,
        "clip_checkpoint_sha256": sha256_file(checkpoint) if checkpoint is not None else None,
        "knn_params": knn,
        "files_sha256": {name: recorded_digest(path) for name, path in files.items()},
    }
    config_file = atomic_write_bytes(out / "config.json", json.dumps(document, indent=2).encode())
    artifacts = {"config": config_file, **files}
    if checkpoint is not None:
        artifacts["clip_checkpoint"] = Path(checkpoint)
    return {name: str(path) for name, path in artifacts.items()}


def _knn_params(
    config: Mapping[str, Any],
    bank: torch.Tensor | None,
    params: Mapping[str, Any] | None,
    dim: int,
) -> dict[str, Any] | None:
    """The KNN score's full parameters when a bank is bundled (checked against it), else None."""
    if bank is None:
        if config["score"] == "knn" or params is not None:
            raise ValueError(
                "the knn score needs its ID feature bank: pass knn_bank to write_bundle"
            )
        return None
    if bank.ndim != 2 or bank.shape[1] != dim:
        raise ValueError(f"knn_bank must be [M, {dim}], got {tuple(bank.shape)}")
    resolved = score_parameters("knn", params or {})
    check_knn_k(resolved["k"], bank.shape[0], "knn_params.k")
    return resolved


def read_config(artifacts: Mapping[str, str]) -> dict[str, Any]:
    config = json.loads(Path(artifacts["config"]).read_text())
    if config.get("format") != BUNDLE_FORMAT:
        raise ValueError(
            f"{artifacts['config']}: serving bundle format {config.get('format')!r}, "
            f"this code reads format {BUNDLE_FORMAT}"
        )
    return config


def bundle_tensors(
    artifacts: Mapping[str, str], config: Mapping[str, Any], name: str
) -> dict[str, torch.Tensor]:
    """The tensors of bundle file ``name``: its bytes checked, and its digest the one ``config``
    recorded when the bundle was written (a file from another bundle is refused)."""
    path = artifacts[name]
    tensors, metadata = load_safetensors(path, REREGISTER)
    expected = config["files_sha256"][name]
    if metadata[DIGEST_KEY] != expected:
        raise CorruptFileError(
            f"{path}: not the {name} this model was registered with (digest "
            f"{metadata[DIGEST_KEY][:12]}..., its config.json records {expected[:12]}...); "
            f"{REREGISTER}"
        )
    return tensors


def check_checkpoint(path: str, expected: str) -> None:
    """The bundled CLIP checkpoint must be the file the bundle was written with."""
    actual = sha256_file(path)
    if actual != expected:
        raise CorruptFileError(
            f"{path}: sha256 {actual[:12]}..., the model was registered with {expected[:12]}...; "
            f"{REREGISTER}"
        )


def load_predictor(
    artifacts: Mapping[str, str],
    device: str | None = None,
    input_policy: InputPolicy | None = None,
) -> CroftPredictor:
    """A :class:`CroftPredictor` from bundle files; CLIP loads on the first image input.

    ``device`` overrides the bundle's ``device`` (``auto``: CUDA when present, else CPU);
    ``input_policy`` bounds image input (default: bytes up to the default cap, no paths).
    """
    config = read_config(artifacts)
    device = device or config.get("device", "auto")
    text_features = bundle_tensors(artifacts, config, "text_features")["text_features"]
    knn_bank = (
        bundle_tensors(artifacts, config, "knn_bank")["bank"] if config["knn_params"] else None
    )
    method = restore_method(
        config["method"],
        {**config["method_config"], "device": device},
        text_features,
        float(config["logit_scale"]),
        int(config["seed"]),
        bundle_tensors(artifacts, config, "adapter"),
    )
    pretrained = (
        artifacts.get("clip_checkpoint") if config["bundled_checkpoint"] else config["pretrained"]
    )

    @cache
    def clip():  # loaded on the first image input; embeddings alone never import open_clip
        from croft_pipeline.clip.backend import load_clip

        if config["bundled_checkpoint"]:
            check_checkpoint(pretrained, config["clip_checkpoint_sha256"])

        return load_clip(
            config["model_name"], pretrained, device=device, precision=config["precision"]
        )

    def encode_images(images: list) -> torch.Tensor:
        from croft_pipeline.clip.backend import encode_images as encode
        from croft_pipeline.clip.views import CENTER

        loaded = clip()
        recipe = loaded.view_recipe(CENTER)
        return encode(loaded, torch.stack([recipe(image) for image in images]))

    return CroftPredictor(
        method=method,
        class_names=list(config["class_names"]),
        logit_scale=float(config["logit_scale"]),
        threshold=float(config["threshold"]),
        embed_dim=int(config["embed_dim"]),
        score=config["score"],
        score_params=dict(config["score_params"]),
        knn_bank=knn_bank,
        knn_params=dict(config["knn_params"] or {}),
        encode_images=encode_images,
        input_policy=input_policy or InputPolicy(),
    )
