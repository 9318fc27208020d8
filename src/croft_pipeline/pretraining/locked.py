"""Pretraining with both towers locked (LiT, text tower locked too): only the projections train.

The image trunk (pretrained, shipped in a package: :mod:`croft_pipeline.pretraining.trunk`) and the
MiniLM text transformer stay frozen, so their outputs are computed once:

1. **Views.** View 0 is each image as decoded at the model's size; views 1.. are seeded random
   resized crops and flips (:func:`croft_pipeline.pretraining.contrastive.augment`, as the from-scratch
   recipe draws them).
2. **Trunk features** ``[V, N, F]``, in fp32 (never bf16, so the checkpoint's bits do not depend
   on the CPU's bf16 support), in eval mode, batched; cached on disk in one safetensors file
   named by the content it depends on (the pixels, the trunk weights, the views, the threads).
3. **Steps** on cached features, on one thread: a batch of pairs, a random view of each pair's image, open_clip's
   ``ClipLoss`` on the projected, normalised features, AdamW (open_clip's decay rule), warm-up
   then cosine; the image projection, the text projection and the logit scale train.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torchvision.transforms import functional as TF
from tqdm.auto import tqdm

from croft_pipeline.clip.configs import project_settings
from croft_pipeline.common.compute import torch_threads
from croft_pipeline.common.features import check_finite
from croft_pipeline.common.files import (
    DIGEST_KEY,
    CorruptFileError,
    load_safetensors,
    recorded_digest,
    save_safetensors,
)
from croft_pipeline.pretraining.contrastive import (
    LOCKED_TOWERS,
    PairData,
    PretrainConfig,
    PretrainResult,
    _text_feature_fn,
    augment,
    contrastive_steps,
)

logger = logging.getLogger(__name__)
RECOMPUTE = "delete it: the next pretrain recomputes it"

PRECISION = "fp32"  # always: the checkpoint must not depend on the CPU's bf16 support
FEATURE_VERSION = 1  # bump when the trunk features of the same inputs change
TRUNK_BATCH = 128
# The projections' steps are small matrices (a batch x 1280 x 256): one thread is ~10x faster than
# two on a busy 2-core machine (OpenMP threads wait on each other); fixed, so the bits are too.
PROJECTION_THREADS = 1


@dataclass
class TrunkFeatures:
    features: torch.Tensor  # [views, images, F] float32
    seconds: float
    cached: bool


def lock_towers(model: torch.nn.Module) -> torch.nn.Module:
    """Freeze the image trunk and the text transformer; the projections and logit scale train."""
    model.requires_grad_(False)
    model.visual.trunk.eval()
    model.visual.head.requires_grad_(True)
    model.text.proj.requires_grad_(True)
    model.logit_scale.requires_grad_(True)
    return model


def feature_key(model_name: str, data: PairData, config: PretrainConfig) -> str:
    """The content the trunk features depend on: pixels, trunk, preprocessing, views, threads."""
    digest = hashlib.sha256(data.images.numpy().tobytes())
    settings = {
        "model_name": model_name,
        "croft": project_settings(model_name),  # the trunk and its normalisation
        "shape": list(data.images.shape),
        "views": config.views,
        "crop_scale": list(config.crop_scale),
        "flip": config.flip,
        "grayscale_p": config.grayscale_p,
        "seed": config.seed,
        "num_threads": config.num_threads,
        "torch": torch.__version__,
        "version": FEATURE_VERSION,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def trunk_features(
    model: torch.nn.Module,
    model_name: str,
    data: PairData,
    config: PretrainConfig,
    cache_dir: Path | None,
    progress: bool = True,
) -> TrunkFeatures:
    """The trunk's features of every view of every image, from ``cache_dir`` when computed before."""
    started = time.perf_counter()
    path = (
        None
        if cache_dir is None
        else Path(cache_dir) / f"{feature_key(model_name, data, config)}.safetensors"
    )
    if path is not None and path.is_file() and _sealed(path):
        features = load_safetensors(path, RECOMPUTE)[0]["features"]
        _check_views(features, f"{path} ({RECOMPUTE})")
        return TrunkFeatures(features, time.perf_counter() - started, True)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    mean, std = list(preprocess["mean"]), list(preprocess["std"])
    generator = torch.Generator().manual_seed(config.seed)
    trunk = model.visual.trunk.eval()
    views = []
    total = config.views * len(data.images)
    bar = tqdm(total=total, desc="image trunk features", unit="img", disable=not progress)
    with torch.inference_mode():
        for view in range(config.views):
            rows = []
            for start in range(0, len(data.images), TRUNK_BATCH):
                batch = data.images[start : start + TRUNK_BATCH]
                if view == 0:
                    pixels = TF.normalize(batch.float().div_(255.0), mean, std)
                else:
                    pixels = augment(batch, mean, std, config, generator)
                rows.append(trunk(pixels.contiguous(memory_format=torch.channels_last)).float())
                bar.update(len(batch))
            views.append(torch.cat(rows))
    bar.close()
    features = torch.stack(views)
    _check_views(features, "image trunk features")
    if path is not None:
        save_safetensors(path, {"features": features.contiguous()}, {"key": path.stem})
    return TrunkFeatures(features, time.perf_counter() - started, False)


def _sealed(path: Path) -> bool:
    """Whether a cached trunk-feature file carries its digest (an older version's is recomputed)."""
    try:
        if recorded_digest(path) is not None:
            return True
    except CorruptFileError as error:
        raise CorruptFileError(f"{error}; {RECOMPUTE}") from None
    logger.warning("recomputing %s: it was written before files carried a %s", path, DIGEST_KEY)
    return False


def _check_views(features: torch.Tensor, what: str) -> None:
    """Trunk features ``[views, N, D]`` must be finite (named by view)."""
    check_finite(features, [f"view {v}" for v in range(len(features))], what)


def pretrain_locked(
    model: torch.nn.Module,
    model_name: str,
    data: PairData,
    tokenizer: Callable[[Sequence[str]], torch.Tensor],
    config: PretrainConfig,
    cache_dir: Path | None = None,
    log: Callable[[int, dict[str, float]], None] = lambda step, values: None,
    progress: bool = True,
) -> PretrainResult:
    """Train ``model``'s projections in place (module docstring); on CPU, in fp32."""
    if not config.lock_text_tower:
        raise ValueError(
            f"{model_name} pretrains with both towers locked: pretrain.lock_text_tower must be true"
        )
    started = time.perf_counter()
    with torch_threads(config.num_threads):  # the towers' forward passes
        torch.manual_seed(config.seed)
        model = lock_towers(model.to("cpu"))
        model.visual.to(memory_format=torch.channels_last)
        trunk = trunk_features(model, model_name, data, config, cache_dir, progress)
        text = _text_feature_fn(model, data.captions, tokenizer, config, torch.device("cpu"))
    with torch_threads(PROJECTION_THREADS):
        result = _train_projections(model, data, text, config, trunk.features, log, progress)
    details = {
        "recipe": LOCKED_TOWERS,
        "precision": PRECISION,
        "views": config.views,
        "trunk_feature_seconds": round(trunk.seconds, 1),
        "trunk_features_cached": trunk.cached,
    }
    return PretrainResult(result.model, result.losses, time.perf_counter() - started, details)


def _train_projections(model, data, text_features, config, features, log, progress):
    started = time.perf_counter()

    def batch(pairs: torch.Tensor, generator: torch.Generator):
        views = torch.randint(config.views, (config.batch_size,), generator=generator)
        trunk_rows = features[views, data.image_of_pair[pairs]]
        image_features = F.normalize(model.visual.head(trunk_rows), dim=-1)
        return image_features, text_features(data.caption_of_pair[pairs])

    losses = contrastive_steps(
        model, len(data.image_of_pair), batch, config, log, progress, "pretrain projections"
    )
    return PretrainResult(model=model, losses=losses, seconds=time.perf_counter() - started)
