"""Contrastive pretraining of a small open_clip model on image–caption pairs (the offline default).

Two recipes share this module's data, augmentation, loss and schedule:

* ``from_scratch`` (:func:`pretrain`): the image tower trains from random weights. Images are
  decoded once into a uint8 tensor at the model's input size; each step draws a batch of pairs,
  augments the images on tensors (random resized crop and flip through one batched
  ``grid_sample``), and minimises open_clip's own ``ClipLoss``. With ``lock_text_tower`` (LiT) the
  text transformer stays frozen, so its pooled outputs are computed once per caption.
* ``locked_towers`` (:mod:`croft_pipeline.pretraining.locked`): a pretrained trunk and the text tower
  both frozen; only the projections train, on trunk features computed once.

:func:`recipe_of` says which one a model config uses.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from tqdm.auto import tqdm

from croft_pipeline.clip.configs import register_project_configs
from croft_pipeline.clip.construction import create_model_and_transforms, describe_weights
from croft_pipeline.common.compute import torch_threads
from croft_pipeline.data.images import load_rgb
from croft_pipeline.pretraining.trunk import load_trunk_weights, trunk_settings

logger = logging.getLogger(__name__)

MAX_LOGIT_SCALE = math.log(100.0)
LOG_EVERY = 25  # steps between progress logs (the report's final loss: the mean of the last ones)
FROM_SCRATCH = "from_scratch"
LOCKED_TOWERS = "locked_towers"


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1200
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_steps: int = 100
    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip: bool = True
    grayscale_p: float = 0.0
    lock_text_tower: bool = False
    bf16: bool = (
        True  # bf16 autocast where the hardware has it (CUDA, or a CPU with AVX512-BF16/AMX)
    )
    seed: int = 0
    log_every: int = LOG_EVERY  # in the stamp: the default keeps earlier checkpoints' stamps
    views: int = 4  # locked_towers: views of each image whose trunk features are computed once
    # torch CPU threads, fixed (not "auto"): the thread count changes the checkpoint's bits (float
    # sums in another order), so it is a setting like the others, and in the stamp
    num_threads: int = 2


@dataclass
class PairData:
    """Decoded images ``[N, 3, S, S]`` uint8, unique caption texts, and (image, caption) pairs."""

    images: torch.Tensor
    captions: list[str]
    image_of_pair: torch.Tensor  # [P] long
    caption_of_pair: torch.Tensor  # [P] long


@dataclass
class PretrainResult:
    model: torch.nn.Module
    losses: list[float]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)  # recipe, precision that ran, ...


def decode_fixed_size(path: str | Path, size: int, interpolation: str = "bicubic") -> torch.Tensor:
    """An image as ``[3, size, size]`` uint8: shortest side resized to ``size``, center-cropped."""
    image = load_rgb(path)
    if image.size != (size, size):
        image = TF.center_crop(TF.resize(image, size, InterpolationMode(interpolation)), size)
    return TF.pil_to_tensor(image)


def build_pair_data(
    image_paths: Sequence[Path], captions: Sequence[str], size: int, progress: bool = True
) -> PairData:
    """Pairs ``(image_paths[i], captions[i])``; each distinct image file is decoded once."""
    if len(image_paths) != len(captions) or not captions:
        raise ValueError(
            f"need one caption per image path, got {len(image_paths)} and {len(captions)}"
        )
    image_ids: dict[Path, int] = {}
    caption_ids: dict[str, int] = {}
    pair_images = [image_ids.setdefault(Path(p), len(image_ids)) for p in image_paths]
    pair_captions = [caption_ids.setdefault(c, len(caption_ids)) for c in captions]
    paths = list(image_ids)
    decoded = [
        decode_fixed_size(p, size)
        for p in tqdm(paths, desc="decode pretraining images", unit="img", disable=not progress)
    ]
    return PairData(
        images=torch.stack(decoded),
        captions=list(caption_ids),
        image_of_pair=torch.tensor(pair_images, dtype=torch.long),
        caption_of_pair=torch.tensor(pair_captions, dtype=torch.long),
    )


def augment(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    config: PretrainConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Random resized crop (square, inside the image), flip, grayscale; then normalize."""
    batch = images.shape[0]
    pixels = images.float().div_(255.0)
    side = torch.empty(batch).uniform_(*config.crop_scale, generator=generator).sqrt()
    center = (torch.rand(batch, 2, generator=generator) * 2 - 1) * (1 - side)[:, None]
    flip = torch.ones(batch)
    if config.flip:
        flip = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = side * flip
    theta[:, 1, 1] = side
    theta[:, :, 2] = center
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    pixels = F.grid_sample(
        pixels, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    if config.grayscale_p > 0:
        gray = torch.rand(batch, generator=generator) < config.grayscale_p
        luma = (pixels * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(
            1, keepdim=True
        )
        pixels = torch.where(gray[:, None, None, None], luma.expand_as(pixels), pixels)
    return TF.normalize(pixels, list(mean), list(std))


def recipe_of(model_name: str) -> str:
    """``locked_towers`` for a project config with a shipped trunk, else ``from_scratch``."""
    return LOCKED_TOWERS if trunk_settings(model_name) else FROM_SCRATCH


def create_trainable_model(model_name: str, seed: int) -> torch.nn.Module:
    """A fresh open_clip model: an HF text tower comes with its pretrained weights, a shipped
    trunk (``croft.trunk``) with its own; everything else is initialised from ``seed``."""
    register_project_configs()
    torch.manual_seed(seed)
    model = create_model_and_transforms(model_name)[0]
    settings = trunk_settings(model_name)
    if settings:
        path = load_trunk_weights(model, model_name)
        source = (
            f"image trunk {settings.get('what', '')} from {path.name} "
            f"({settings.get('distribution')}, {settings.get('license')}), locked; projections "
            f"initialized (seed {seed}), trained here"
        )
    else:
        source = f"image tower randomly initialized (seed {seed}), trained here"
    logger.info(describe_weights(model_name, source, text_weights=True))
    return model


def precision_of(config: PretrainConfig, device: torch.device) -> str:
    """The precision the from-scratch recipe runs in on ``device`` (bf16 only where supported)."""
    return "bf16" if config.bf16 and bf16_supported(device) else "fp32"


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pretrain(
    model: torch.nn.Module,
    data: PairData,
    tokenizer: Callable[[Sequence[str]], torch.Tensor],
    config: PretrainConfig,
    device: torch.device,
    log: Callable[[int, dict[str, float]], None] = lambda step, values: None,
    progress: bool = True,
) -> PretrainResult:
    """Train ``model`` in place with ClipLoss; returns it with the loss curve and wall time."""
    with torch_threads(config.num_threads):
        return _pretrain(model, data, tokenizer, config, device, log, progress)


def _pretrain(model, data, tokenizer, config, device, log, progress) -> PretrainResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    model = model.to(device).train().requires_grad_(True)
    model.visual.to(memory_format=torch.channels_last)  # ~5x faster convolutions on CPU (oneDNN)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    mean, std = preprocess["mean"], preprocess["std"]
    text_features = _text_feature_fn(model, data.captions, tokenizer, config, device)
    use_bf16 = precision_of(config, device) == "bf16"

    def batch(pairs: torch.Tensor, generator: torch.Generator):
        pixels = augment(data.images[data.image_of_pair[pairs]], mean, std, config, generator)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            pixels = pixels.to(device).contiguous(memory_format=torch.channels_last)
            image_features = model.encode_image(pixels, normalize=True).float()
            texts = text_features(data.caption_of_pair[pairs]).float()
        return image_features, texts

    losses = contrastive_steps(model, len(data.image_of_pair), batch, config, log, progress)
    details = {"recipe": FROM_SCRATCH, "precision": "bf16" if use_bf16 else "fp32"}
    return PretrainResult(model, losses, time.perf_counter() - started, details)


def contrastive_steps(
    model: torch.nn.Module,
    n_pairs: int,
    batch: Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]],
    config: PretrainConfig,
    log: Callable[[int, dict[str, float]], None],
    progress: bool,
    desc: str = "pretrain CLIP",
) -> list[float]:
    """The steps both recipes share: the learning-rate schedule, a seeded batch of pairs, open_clip's
    ``ClipLoss`` on ``batch(pairs, generator)``'s normalised (image, text) features, AdamW, the
    logit-scale clamp, progress and logging. Leaves ``model`` in eval mode, frozen; the losses."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    schedule = _schedule(config)
    loss_fn = ClipLoss()
    losses: list[float] = []
    bar = tqdm(range(config.steps), desc=desc, unit="step", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * schedule(step)
        pairs = torch.randint(n_pairs, (config.batch_size,), generator=generator)
        image_features, texts = batch(pairs, generator)
        loss = loss_fn(image_features, texts, model.logit_scale.exp().float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        losses.append(float(loss.item()))
        if step % config.log_every == 0 or step == config.steps - 1:
            values = _progress(losses[-config.log_every :], model, image_features, texts)
            bar.set_postfix(loss=f"{values['pretrain_loss']:.3f}")
            log(step, values)
    model.eval().requires_grad_(False)
    return losses


def _progress(losses: list[float], model, image_features, text_features) -> dict[str, float]:
    """Mean recent loss, the logit scale, and the in-batch image->caption retrieval accuracy."""
    with torch.no_grad():
        scores = image_features @ text_features.T
        hits = scores.argmax(dim=1) == torch.arange(len(scores), device=scores.device)
        return {
            "pretrain_loss": sum(losses) / len(losses),
            "pretrain_logit_scale": float(model.logit_scale.exp()),
            "pretrain_batch_acc": float(hits.float().mean()),
        }


def _text_feature_fn(
    model, captions, tokenizer, config, device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """caption indices -> normalized text features (grad flows into the trainable parts)."""
    tokens = tokenizer(list(captions)).to(device)
    if not config.lock_text_tower:
        return lambda index: model.encode_text(tokens[index.to(device)], normalize=True)
    if not hasattr(model, "text") or not hasattr(model.text, "transformer"):
        raise ValueError("lock_text_tower needs an HF text tower (text_cfg.hf_model_name)")
    model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    encoder = model.text
    encoder.transformer.eval()
    pooled_all = _pooled_text(encoder, tokens)
    return lambda index: F.normalize(encoder.proj(pooled_all[index.to(device)]), dim=-1)


def _pooled_text(encoder: torch.nn.Module, tokens: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The frozen HF transformer's pooled outputs of every caption, in order. Captions run
    shortest first, each batch cut to its longest caption (the padding is masked anyway)."""
    mask = (tokens != encoder.config.pad_token_id).long()
    order = torch.argsort(mask.sum(dim=1), stable=True)
    pooled = torch.empty(len(tokens), encoder.transformer.config.hidden_size)
    with torch.no_grad():
        for start in range(0, len(tokens), batch):
            rows = order[start : start + batch]
            width = int(mask[rows].sum(dim=1).max())
            ids, keep = tokens[rows, :width], mask[rows, :width]
            out = encoder.transformer(input_ids=ids, attention_mask=keep)
            pooled[rows] = encoder.pooler(out, keep)
    return pooled


def _optimizer(model: torch.nn.Module, config: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on gains, biases and the logit scale (open_clip's rule)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exclude = (
            param.ndim < 2
            or "bn" in name
            or "ln" in name
            or "bias" in name
            or "logit_scale" in name
        )
        (no_decay if exclude else decay).append(param)
    groups = [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": config.weight_decay},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def _schedule(config: PretrainConfig) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero: a factor on the base learning rate."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def image_size_of(model: torch.nn.Module) -> int:
    size = open_clip.get_model_preprocess_cfg(model)["size"]
    return int(size if isinstance(size, int) else size[0])
