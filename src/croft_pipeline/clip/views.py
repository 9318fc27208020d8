"""Image views for embedding: the model's center view and seeded augmented views.

Augmented views follow the official CRoFT/CoOp recipe (RandomResizedCrop at the model's input size
with the model's interpolation, horizontal flip, the model's normalization). Each view draws its
randomness from a generator seeded by ``(image sha256, view index, seed)``, so a view computed
today and one recomputed after a crash are the same pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torchvision.transforms import Compose, InterpolationMode
from torchvision.transforms import functional as TF

CENTER = "center"
AUGMENT = "augment"
RECIPE_VERSION = 1  # bump when the way a view is computed changes: every cached view misses


def preprocess_signature(preprocess_cfg: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready parts of an open_clip preprocess config that change pixels."""
    keys = ("size", "mode", "mean", "std", "interpolation", "resize_mode", "fill_color")
    return {key: _jsonable(preprocess_cfg[key]) for key in keys if key in preprocess_cfg}


@dataclass(frozen=True)
class ViewRecipe:
    """How the views of one feature table are computed from an image."""

    kind: str  # CENTER or AUGMENT
    preprocess: dict[str, Any]  # preprocess_signature(...) of the model
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    seed: int = 0
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        if self.kind not in (CENTER, AUGMENT):
            raise ValueError(f"view kind must be {CENTER!r} or {AUGMENT!r}, got {self.kind!r}")

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (feature-table meta and cache key)."""
        described = asdict(self)
        if self.kind == CENTER:
            for key in ("scale", "ratio", "flip", "seed"):
                described.pop(key)
        return _jsonable(described)

    def key(self) -> str:
        """Short content hash of :meth:`describe`: changes whenever a view's pixels would."""
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __call__(self, image: Image.Image, image_sha256: str = "", view: int = 0) -> torch.Tensor:
        """The ``view``-th view of ``image`` as a normalized ``[3, S, S]`` float tensor."""
        return self.normalize(self.pixels(image, image_sha256, view)[None])[0]

    def pixels(self, image: Image.Image, image_sha256: str = "", view: int = 0) -> torch.Tensor:
        """The ``view``-th view as ``[3, S, S]`` uint8 (cheap to make in DataLoader workers)."""
        image = image.convert("RGB")
        size = _size_pair(self.preprocess["size"])
        if self.kind == CENTER:
            if image.size == size[::-1]:  # every open_clip eval geometry leaves such an image as is
                return TF.pil_to_tensor(image)
            resize_and_crop = _center_geometry(json.dumps(self.preprocess, sort_keys=True))
            return TF.pil_to_tensor(resize_and_crop(image))
        generator = torch.Generator().manual_seed(view_seed(image_sha256, view, self.seed))
        top, left, height, width = random_resized_crop_box(
            image.width, image.height, self.scale, self.ratio, generator
        )
        interpolation = InterpolationMode(self.preprocess.get("interpolation", "bicubic"))
        image = TF.resized_crop(image, top, left, height, width, list(size), interpolation)
        if self.flip and torch.rand((), generator=generator).item() < 0.5:
            image = TF.hflip(image)
        return TF.pil_to_tensor(image)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, S, S]`` -> the model's input: ``ToTensor`` then ``Normalize``, batched."""
        options = {"dtype": torch.float32, "device": pixels.device}
        mean = torch.tensor(self.preprocess["mean"], **options).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocess["std"], **options).view(1, 3, 1, 1)
        return pixels.to(torch.float32).div_(255).sub_(mean).div_(std)


def view_seed(image_sha256: str, view: int, seed: int) -> int:
    """A 63-bit seed that depends only on the image content, the view index and the seed."""
    digest = hashlib.sha256(f"{image_sha256}:{view}:{seed}".encode()).hexdigest()
    return int(digest[:15], 16)


def random_resized_crop_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box ``(top, left, h, w)``, drawn from ``generator``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        draws = torch.rand(4, generator=generator).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * draws[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draws[1])
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(draws[2] * (height - crop_h + 1))
            left = int(draws[3] * (width - crop_w + 1))
            return top, left, crop_h, crop_w
    in_ratio = width / height  # fallback: the central crop with the closest allowed ratio
    if in_ratio < min(ratio):
        crop_w, crop_h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        crop_h, crop_w = height, round(height * max(ratio))
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


@lru_cache(maxsize=8)
def _center_geometry(preprocess_json: str) -> Callable[[Image.Image], Image.Image]:
    """open_clip's own eval transform up to its ``ToTensor``/``Normalize`` tail (PIL -> PIL)."""
    cfg = PreprocessCfg(**_preprocess_kwargs(json.loads(preprocess_json)))
    steps = image_transform_v2(cfg, is_train=False).transforms
    if [type(step).__name__ for step in steps[-2:]] != ["MaybeToTensor", "Normalize"]:
        raise ValueError(f"unexpected open_clip eval transform: {steps}")
    return Compose(steps[:-2])


def _size_pair(size: Any) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int | float) else (int(size[0]), int(size[1]))


def _preprocess_kwargs(signature: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(signature)
    for key in ("mean", "std"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    if isinstance(kwargs.get("size"), list):
        kwargs["size"] = tuple(kwargs["size"])
    return kwargs


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
