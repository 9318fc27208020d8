"""The offline default CLIP: pretrain it once, reuse the checkpoint while nothing it depends on changes.

Its training data is always EmojiShift's pretraining image-caption pairs, whatever dataset the
downstream pipelines read: ingest's pairs when it renders EmojiShift, else
:func:`emojishift_pretrain_pairs` (a folder dataset has no captions). So one checkpoint stamp
serves every dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import open_clip
import pandas as pd
import torch

from croft_pipeline.clip.backend import check_sealed_checkpoint, checkpoint_sha256
from croft_pipeline.clip.configs import register_project_configs
from croft_pipeline.common.compute import resolve_device
from croft_pipeline.data.emojishift import (
    build_pretrain_pairs,
    caption_templates,
    render_emojishift,
)
from croft_pipeline.data.manifest import build_manifest
from croft_pipeline.pretraining.checkpoint import (
    STAMP_KEY,
    checkpoint_metadata,
    pretrain_stamp,
    save_checkpoint,
)
from croft_pipeline.pretraining.contrastive import (
    FROM_SCRATCH,
    LOCKED_TOWERS,
    PretrainConfig,
    build_pair_data,
    create_trainable_model,
    image_size_of,
    precision_of,
    pretrain,
    recipe_of,
)
from croft_pipeline.pretraining.locked import PRECISION as LOCKED_PRECISION
from croft_pipeline.pretraining.locked import pretrain_locked

PRETRAIN_SOURCE = {"root": "pretrain", "layout": "domains", "role": "pretrain"}


def pretrain_config(params: dict[str, Any]) -> PretrainConfig:
    """A :class:`PretrainConfig` from the ``pretrain`` parameters (unknown keys are ignored)."""
    known = {field.name for field in fields(PretrainConfig)}
    values = {key: value for key, value in params.items() if key in known}
    if "crop_scale" in values:
        values["crop_scale"] = tuple(float(v) for v in values["crop_scale"])
    for key in ("lr", "weight_decay", "grayscale_p"):
        if key in values:
            values[key] = float(values[key])
    return PretrainConfig(**values)


def is_project_checkpoint(
    pretrained: str | None, checkpoint: str, base_dir: str | os.PathLike
) -> bool:
    """True when ``pretrained`` names the file the pretrain pipeline writes (so it trains it)."""
    if not pretrained:
        return False
    return (Path(base_dir) / pretrained).resolve() == (Path(base_dir) / checkpoint).resolve()


def emojishift_pretrain_pairs(
    emojishift: dict[str, Any], roots: dict[str, Path], decode: dict[str, Any]
) -> pd.DataFrame:
    """EmojiShift's pretraining pairs, rendered (or reused) under ``roots`` ``main`` and
    ``pretrain``: the same pairs, and so the same stamp, as an ingest of EmojiShift gives."""
    render_emojishift(emojishift, roots["main"], roots["pretrain"])
    manifest, _, _ = build_manifest([PRETRAIN_SOURCE], roots, {}, decode)
    return build_pretrain_pairs(manifest, caption_templates(emojishift))


def ensure_checkpoint(
    model_name: str,
    image_paths: Sequence[Path],
    image_sha256: Sequence[str],
    captions: Sequence[str],
    target: Path,
    config: PretrainConfig,
    device: str | torch.device | None = None,
    force: bool = False,
    log: Callable[[int, dict[str, float]], None] = lambda step, values: None,
    progress: bool = True,
    feature_cache: Path | None = None,
) -> dict[str, Any]:
    """Train ``model_name`` on the pairs and write ``target``, unless a matching checkpoint exists.

    The recipe follows the model config (:func:`recipe_of`); ``feature_cache`` is where the
    locked-towers recipe keeps its trunk features. Returns a JSON-ready report: whether it
    trained, the recipe and the precision that ran, the wall time, the final loss, the sha256.
    """
    register_project_configs()
    recipe = recipe_of(model_name)
    target_device = resolve_device(device if recipe == FROM_SCRATCH else "cpu")
    precision = LOCKED_PRECISION if recipe == LOCKED_TOWERS else precision_of(config, target_device)
    stamp = pretrain_stamp(model_name, config, zip(image_sha256, captions, strict=True), precision)
    report: dict[str, Any] = {
        "model_name": model_name,
        "stamp": stamp,
        "config": asdict(config),
        "recipe": recipe,
        "precision": precision,
    }
    if not force and target.is_file() and checkpoint_metadata(target).get(STAMP_KEY) == stamp:
        check_sealed_checkpoint(target)  # reused only with the bytes it was written with
        return {
            **report,
            "trained": False,
            "reused": True,
            "checkpoint_sha256": checkpoint_sha256(target),
        }
    model = create_trainable_model(model_name, config.seed)
    data = build_pair_data(image_paths, captions, image_size_of(model), progress=progress)
    tokenizer = open_clip.get_tokenizer(model_name)
    if recipe == LOCKED_TOWERS:
        result = pretrain_locked(
            model, model_name, data, tokenizer, config, feature_cache, log=log, progress=progress
        )
    else:
        result = pretrain(model, data, tokenizer, config, target_device, log=log, progress=progress)
    metadata = {
        STAMP_KEY: stamp,
        "model_name": model_name,
        "format": "open_clip state_dict",
        "recipe": recipe,
        "precision": precision,
    }
    save_checkpoint(result.model, target, metadata)
    tail = result.losses[-config.log_every :]
    return {
        **report,
        **result.details,
        "trained": True,
        "reused": False,
        "seconds": round(result.seconds, 1),
        "device": str(target_device),
        "images": int(data.images.shape[0]),
        "pairs": len(captions),
        "final_loss": sum(tail) / len(tail),
        "checkpoint_sha256": checkpoint_sha256(target),
    }
