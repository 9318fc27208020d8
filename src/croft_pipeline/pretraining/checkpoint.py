"""Checkpoints of the project's own CLIP: safetensors files open_clip loads, plus a training stamp.

The stamp (in the safetensors header) hashes everything that changes the trained weights: the
model config as shipped, the pretraining settings, the precision that runs (bf16 autocast only
where the from-scratch recipe finds it supported; the locked-towers recipe always fp32), the
image–caption pairs and :data:`PRETRAIN_VERSION`. A checkpoint whose stamp matches is reused instead of retrained.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open

from croft_pipeline.clip.configs import shipped_config
from croft_pipeline.common.files import save_safetensors
from croft_pipeline.pretraining.contrastive import PretrainConfig

PRETRAIN_VERSION = 2  # bump when the training code changes what a run produces
STAMP_KEY = "croft_pretrain_stamp"


def model_config_text(model_name: str) -> str:
    """The model config as shipped (``pkg:`` references unresolved, so the stamp is portable)."""
    shipped = shipped_config(model_name)
    config = shipped if shipped is not None else open_clip.get_model_config(model_name)
    return json.dumps(config, sort_keys=True)


def pretrain_stamp(
    model_name: str, config: PretrainConfig, pairs: Iterable[tuple[str, str]], precision: str
) -> str:
    """Hash of (model config, settings, precision, sorted (image sha256, caption) pairs, version)."""
    digest = hashlib.sha256()
    header = {
        "model_name": model_name,
        "model_config": model_config_text(model_name),
        "config": asdict(config),
        "precision": precision,
        "version": PRETRAIN_VERSION,
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for sha256, caption in sorted(pairs):
        digest.update(f"{sha256}\t{caption}\n".encode())
    return digest.hexdigest()


def save_checkpoint(model: torch.nn.Module, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Atomically write the model's state dict as safetensors with string ``metadata``."""
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    header = {key: str(value) for key, value in metadata.items()}
    return save_safetensors(path, tensors, header)


def checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata of a checkpoint; empty if unreadable or absent."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError):
        return {}
