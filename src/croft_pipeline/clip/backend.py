"""Kedro-free CLIP backend over open_clip: load a model, encode images and class prompts.

``pretrained`` is a hub tag (e.g. ``openai``; needs the network, or weights already in the local
cache), a local checkpoint path (``.safetensors`` preferred, ``.pt``/``.bin`` loaded with
``weights_only=True``), or ``None`` for random weights (seeded, for benchmarks and tests).
Every failure to set up a model is a :class:`ClipLoadError` that says what to do.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.factory import load_state_dict
from open_clip.pretrained import download_pretrained, get_pretrained_cfg, is_pretrained_cfg
from PIL import Image

from croft_pipeline.clip.configs import register_project_configs
from croft_pipeline.clip.construction import create_model_and_transforms, describe_weights
from croft_pipeline.clip.errors import ClipLoadError, MissingCheckpointError
from croft_pipeline.clip.params import PRECISION, PRECISIONS, TEMPLATES
from croft_pipeline.clip.views import CENTER, ViewRecipe, preprocess_signature
from croft_pipeline.common.compute import resolve_device
from croft_pipeline.common.files import read_safetensors, recorded_digest, sha256_file

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
RANDOM_INIT_SEED = 0

logger = logging.getLogger(__name__)


@dataclass
class LoadedClip:
    """A frozen CLIP model ready to encode, with its preprocessing, tokenizer and identity."""

    model: torch.nn.Module
    preprocess_eval: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    identity: dict[str, Any]  # model_name, pretrained, checkpoint_sha256, precision (+ overrides)
    preprocess_cfg: dict[str, Any]
    device: torch.device
    precision: str
    embed_dim: int

    @property
    def model_key(self) -> str:
        """Short content hash of the model identity (cache folder name)."""
        keyed = {
            key: self.identity[key] for key in ("model_name", "checkpoint_sha256", "precision")
        }
        if self.identity.get("force_quick_gelu"):  # not the features a GELU build once cached
            keyed["force_quick_gelu"] = True
        if keyed["checkpoint_sha256"] is None:
            keyed["pretrained"] = self.identity["pretrained"]
        text = json.dumps(keyed, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def logit_scale(self) -> float:
        """``exp(logit_scale)`` of the model (the temperature CLIP's logits use)."""
        return float(self.model.logit_scale.detach().exp().item())

    def view_recipe(self, kind: str = CENTER, **augment: Any) -> ViewRecipe:
        """The recipe for center (``kind="center"``) or seeded augmented views of this model."""
        return ViewRecipe(
            kind=kind, preprocess=preprocess_signature(self.preprocess_cfg), **augment
        )

    def autocast(self) -> AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()


def load_clip(
    model_name: str,
    pretrained: str | os.PathLike | None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    base_dir: str | os.PathLike | None = None,
) -> LoadedClip:
    """Load an open_clip model, frozen and in eval mode; relative checkpoint paths use ``base_dir``."""
    if not PRECISION.holds(precision):
        raise ClipLoadError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    check_model_name(model_name)
    checkpoint = resolve_pretrained(model_name, pretrained, base_dir)
    tag = str(pretrained) if _is_tag(model_name, pretrained) else None
    overrides = _tag_overrides(model_name, tag)
    target = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)  # random weights (pretrained=None) are reproducible
        model, _, preprocess_eval = _create_model(model_name, checkpoint, tag, overrides)
    model = model.to(target).eval().requires_grad_(False)
    model.visual.to(memory_format=torch.channels_last)  # faster convolutions (oneDNN, cuDNN)
    preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(model))
    identity = {
        "model_name": model_name,
        "pretrained": None if pretrained in (None, "") else str(pretrained),
        "checkpoint_sha256": None if checkpoint is None else checkpoint_sha256(checkpoint),
        "precision": precision,
        **overrides,
    }
    return LoadedClip(
        model=model,
        preprocess_eval=preprocess_eval,
        tokenizer=open_clip.get_tokenizer(model_name),
        identity=identity,
        preprocess_cfg=preprocess_cfg,
        device=target,
        precision=precision,
        embed_dim=int(open_clip.get_model_config(model_name.replace("/", "-"))["embed_dim"]),
    )


def load_configured_clip(
    clip: Mapping[str, Any],
    base_dir: str | os.PathLike,
    expected_sha256: str | None = None,
    expected_from: str = "",
) -> LoadedClip:
    """The model ``params:clip`` names; with ``expected_sha256``, its weights must be that file.

    A mismatch (the checkpoint was retrained or replaced, or the configuration now names another
    model than the one ``expected_from`` describes) is a :class:`ClipLoadError` naming both.
    """
    loaded = load_clip(
        clip["model_name"],
        clip["pretrained"],
        clip.get("device"),
        clip.get("precision", "fp32"),
        base_dir=base_dir,
    )
    actual = loaded.identity["checkpoint_sha256"]
    if expected_sha256 and actual != expected_sha256:
        raise ClipLoadError(
            f"clip.model_name={clip['model_name']!r}, clip.pretrained={clip['pretrained']!r} "
            f"(sha256 {str(actual)[:12]}...) is not the model {expected_from} "
            f"(sha256 {expected_sha256[:12]}...): re-run `kedro run --pipeline=pretrain` "
            f"so that every stage uses the configured model"
        )
    return loaded


def check_model_name(model_name: str) -> None:
    """Raise a :class:`ClipLoadError` naming close matches unless open_clip knows the model."""
    register_project_configs()
    known = open_clip.list_models()
    if model_name.replace("/", "-") in known:
        return
    close = difflib.get_close_matches(model_name, known, n=5, cutoff=0.5)
    hint = f" Did you mean one of {close}?" if close else ""
    raise ClipLoadError(
        f"unknown CLIP model name {model_name!r}.{hint} Use a name from open_clip.list_models() "
        f"or add a JSON model config to src/croft_pipeline/clip/model_configs/."
    )


def resolve_pretrained(
    model_name: str, pretrained: str | os.PathLike | None, base_dir: str | os.PathLike | None = None
) -> Path | None:
    """The checkpoint file for ``pretrained`` (a tag is fetched or found in the local cache)."""
    if _is_tag(model_name, pretrained):
        return _hub_checkpoint(model_name.replace("/", "-"), str(pretrained))
    return local_checkpoint(model_name, pretrained, base_dir)


def local_checkpoint(
    model_name: str, pretrained: str | os.PathLike | None, base_dir: str | os.PathLike | None = None
) -> Path | None:
    """The local weights file ``pretrained`` names (relative paths from ``base_dir``).

    ``None`` for random weights and for a hub tag; a path that does not exist, or a name that is
    neither a tag nor a file, is a :class:`ClipLoadError` that says what to do.
    """
    if pretrained is None or str(pretrained) in ("", "none", "random"):
        return None
    if _is_tag(model_name, pretrained):
        return None
    path = Path(pretrained)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.is_file():
        return path
    if _looks_like_path(str(pretrained)):
        raise MissingCheckpointError(
            f"CLIP checkpoint {str(path)!r} does not exist. For the project's default model run "
            f"`kedro run --pipeline=pretrain` first; otherwise point clip.pretrained at an existing "
            f"checkpoint file or a hub tag."
        )
    tags = open_clip.list_pretrained_tags_by_model(model_name.replace("/", "-"))
    raise ClipLoadError(
        f"pretrained={str(pretrained)!r} is neither a hub tag of {model_name!r} "
        f"(known tags: {tags or 'none'}) nor an existing checkpoint file."
    )


def _is_tag(model_name: str, pretrained: str | os.PathLike | None) -> bool:
    return pretrained is not None and is_pretrained_cfg(
        model_name.replace("/", "-"), str(pretrained)
    )


def checkpoint_sha256(path: Path) -> str:
    stat = path.stat()
    return _cached_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _hub_checkpoint(model_name: str, tag: str) -> Path:
    cfg = get_pretrained_cfg(model_name, tag)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    if offline and not cfg.get("hf_hub") and not cfg.get("file"):
        raise _offline_error(model_name, tag, "the tag has no HF-hub mirror")
    try:
        return Path(download_pretrained(cfg))
    except Exception as error:  # hub/network errors come in many types
        if offline:
            raise _offline_error(model_name, tag, type(error).__name__) from error
        raise ClipLoadError(
            f"could not fetch weights for {model_name!r} pretrained={tag!r}: {error}"
        ) from error


def _offline_error(model_name: str, tag: str, reason: str) -> ClipLoadError:
    return ClipLoadError(
        f"pretrained={tag!r} for {model_name!r} needs a download, but HF_HUB_OFFLINE=1 and the "
        f"weights are not in the local cache ({reason}). Either run once with network and "
        f"HF_HUB_OFFLINE=0 to fill the cache, or set clip.pretrained to a local checkpoint path."
    )


def _create_model(
    model_name: str, checkpoint: Path | None, tag: str | None, overrides: Mapping[str, Any]
):
    """(model, train transform, eval transform); a local checkpoint is checked against the config."""
    if tag is not None or checkpoint is None:
        created = create_model_and_transforms(model_name, tag, **overrides)
        source = (
            f"weights of hub tag {tag!r}" if tag else f"random weights (seed {RANDOM_INIT_SEED})"
        )
        logger.info(describe_weights(model_name, source, text_weights=tag is None))
        return created
    check_sealed_checkpoint(checkpoint)
    created = create_model_and_transforms(model_name, pretrained_text=False)
    try:
        open_clip.load_checkpoint(created[0], str(checkpoint), strict=True, weights_only=True)
    except Exception as error:  # unreadable files fail with many types; read_checkpoint says so
        state = read_checkpoint(checkpoint)
        raise ClipLoadError(
            f"checkpoint {str(checkpoint)!r} (clip.pretrained) does not fit the architecture "
            f"{model_name!r} ({_mismatch(created[0], state) or error}). Was it trained for "
            f"another model config? Set clip.model_name to the checkpoint's architecture, or "
            f"re-run pretrain."
        ) from error
    logger.info(describe_weights(model_name, f"weights from {checkpoint}", text_weights=False))
    return created


RETRAIN_CHECKPOINT = "delete it: `kedro run --pipeline=pretrain` trains it again"


def check_sealed_checkpoint(checkpoint: Path) -> None:
    """A checkpoint this project wrote (sealed) must still have its bytes; others are not sealed
    (a hub download, a user's file) and are loaded as they are. Checked once per process and
    file version (path, size, mtime), as :func:`checkpoint_sha256` hashes."""
    if checkpoint.suffix == ".safetensors" and recorded_digest(checkpoint) is not None:
        stat = checkpoint.stat()
        _checked_once(str(checkpoint.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _checked_once(path: str, size: int, mtime_ns: int) -> None:
    read_safetensors(path, RETRAIN_CHECKPOINT)  # raises: a failed check is never cached


def _tag_overrides(model_name: str, tag: str | None) -> dict[str, Any]:
    """What a hub tag's weights need beyond the model config: OpenAI's weights were trained with
    QuickGELU, which open_clip's plain configs (``ViT-B-16``, ``RN50``) lack; it only warns, and
    builds the model with GELU (features that are not CLIP's)."""
    name = model_name.replace("/", "-")
    if tag is None or not get_pretrained_cfg(name, tag).get("quick_gelu"):
        return {}
    if (open_clip.get_model_config(name) or {}).get("quick_gelu"):
        return {}  # e.g. ViT-B-16-quickgelu
    return {"force_quick_gelu": True}


def read_checkpoint(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (pickled ``.pt`` files with ``weights_only=True``: no code runs).

    A file that cannot be read, whatever the library's error, is a :class:`ClipLoadError` naming
    the file and ``clip.pretrained``.
    """
    try:
        return load_state_dict(str(checkpoint), weights_only=True)
    except Exception as error:  # safetensors, pickle, zip and OS errors have many types
        raise unreadable_checkpoint(checkpoint, error) from None


def unreadable_checkpoint(path: Path, error: Exception) -> ClipLoadError:
    """The error for a weights file that cannot be read; never advises loading pickled code."""
    detail = str(error).splitlines()[0] if str(error) else ""
    if "weights_only" in str(error) or "pickle" in type(error).__module__:
        detail = "it holds pickled Python objects besides tensors, which are not loaded"
    return ClipLoadError(
        f"CLIP checkpoint {str(path)!r} (from clip.pretrained) cannot be read: "
        f"{type(error).__name__}: {detail}. The file is truncated, corrupt or more than a plain "
        f"state dict. Re-run `kedro run --pipeline=pretrain` (the default model) or fetch the "
        f"file again; a .pt/.bin from a source you trust can be converted to .safetensors "
        f"(safetensors.torch.save_file of its state dict) and clip.pretrained pointed at that."
    )


def _mismatch(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """A short description of how a checkpoint's tensors differ from the model's."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    resized = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    parts = [
        f"{len(items)} {label}, e.g. {items[0]!r}"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", resized),
        )
        if items
    ]
    return "; ".join(parts)


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.endswith(CHECKPOINT_SUFFIXES)


def encode_images(
    loaded: LoadedClip,
    images: Sequence[Image.Image] | torch.Tensor,
    batch_size: int = 256,
) -> torch.Tensor:
    """Raw (unnormalized) image features ``[N, D]`` float32 on CPU.

    ``images`` are PIL images (the model's center preprocessing is applied) or an already
    preprocessed ``[N, 3, S, S]`` tensor.
    """
    if not isinstance(images, torch.Tensor):
        images = torch.stack([loaded.preprocess_eval(image) for image in images])
    outputs = []
    with torch.inference_mode(), loaded.autocast():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            outputs.append(encode_pixels(loaded, batch))
    return torch.cat(outputs) if outputs else torch.empty(0, loaded.embed_dim)


def encode_pixels(loaded: LoadedClip, pixels: torch.Tensor) -> torch.Tensor:
    """Raw image features of one preprocessed batch ``[B, 3, S, S]`` (call under inference mode)."""
    pixels = pixels.to(loaded.device, non_blocking=True).contiguous(
        memory_format=torch.channels_last
    )
    return loaded.model.encode_image(pixels).float().cpu()


def encode_texts(
    loaded: LoadedClip, texts: Sequence[str], batch_size: int = 256, trim: bool = False
) -> torch.Tensor:
    """Raw (unnormalized) text features ``[N, D]`` float32 on CPU.

    ``trim``: for a Hugging Face text tower (its attention mask hides the padding), batch the
    texts by token count and drop each batch's all-padding columns: the same features up to
    float rounding (measured: <= 7.2e-7 on the default CLIP), 2.2x faster for short prompts.
    """
    if not len(texts):
        return torch.empty(0, loaded.embed_dim)
    tokens = loaded.tokenizer(list(texts))
    pad = getattr(
        getattr(getattr(loaded.model, "text", None), "config", None), "pad_token_id", None
    )
    lengths = (tokens != pad).sum(dim=1) if trim and pad is not None else None
    order = torch.argsort(lengths, stable=True) if lengths is not None else torch.arange(len(texts))
    features = torch.empty(len(texts), loaded.embed_dim)
    with torch.inference_mode(), loaded.autocast():
        for rows in order.split(batch_size):
            batch = tokens[rows]
            if lengths is not None:
                batch = batch[:, : int(lengths[rows].max())]
            features[rows] = loaded.model.encode_text(batch.to(loaded.device)).float().cpu()
    return features


def encode_class_prompts(
    loaded: LoadedClip, classnames: Sequence[str], templates: str | Sequence[str]
) -> torch.Tensor:
    """Class text features ``[K, D]`` (docs/algorithm.md §3).

    One template: the raw ``encode_text`` output. Several: per class, encode every template,
    L2-normalize each, average, L2-normalize again. Underscores in class names become spaces.
    """
    prompts, n_templates = class_prompts(classnames, templates)
    return pooled_prompts(encode_texts(loaded, prompts), n_templates)


def class_prompts(
    classnames: Sequence[str], templates: str | Sequence[str]
) -> tuple[list[str], int]:
    """Every class's prompt under every template (class-major), and the template count."""
    TEMPLATES.check("templates", templates)
    templates = [templates] if isinstance(templates, str) else list(templates)
    names = [name.replace("_", " ") for name in classnames]
    return [template.format(name) for name in names for template in templates], len(templates)


def pooled_prompts(features: torch.Tensor, n_templates: int) -> torch.Tensor:
    """Class-major prompt features ``[K * T, D]`` -> class features ``[K, D]``: the raw feature
    for one template; else normalize, average over the templates, normalize."""
    features = features.view(-1, n_templates, features.shape[-1])
    if n_templates == 1:
        return features[:, 0]
    features = torch.nn.functional.normalize(features, dim=-1).mean(dim=1)
    return torch.nn.functional.normalize(features, dim=-1)
