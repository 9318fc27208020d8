"""ImageNet-C-style corruptions of the ID test images: extra covariate test sets (CRoFT's Setup I).

Four of Hendrycks & Dietterich's corruptions (ICLR 2019, ``make_imagenet_c.py``), severities 1-5,
their parameter tables scaled for small images where a parameter is a length in pixels:

- ``gaussian_noise``: add N(0, c) to [0, 1] pixels, c = .08, .12, .18, .26, .38 (ImageNet-C's);
- ``gaussian_blur``: a Gaussian of standard deviation sigma = ImageNet-C's (1, 2, 3, 4, 6 px at
  224 px) times side / 224, so 0.29 ... 1.71 px at 64 px (Pillow's ``GaussianBlur``);
- ``jpeg_compression``: JPEG at quality 25, 18, 15, 10, 7 (ImageNet-C's), decoded again;
- ``contrast``: (x - mean) * c + mean per channel, c = .4, .3, .2, .1, .05 (ImageNet-C's).

Deterministic: the noise is seeded by (image sha256, corruption, severity), and every image is
written as PNG with fixed settings through a temporary file and a rename, so a rerun writes the
same bytes. Each (corruption, severity) is one covariate test set, its ``domain``
``<corruption>-<severity>`` (e.g. ``gaussian_noise-3``), under
``<root>/<corruption>-<severity>/<image's root>/<image's path>.png``.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter
from tqdm.auto import tqdm

from croft_pipeline.common.files import sha256_bytes
from croft_pipeline.data.discovery import resolve_in_root
from croft_pipeline.data.emojishift import png_bytes, write_if_changed
from croft_pipeline.data.images import load_rgb

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 224  # ImageNet-C's image side, which its blur sigmas are given for
NOISE_SCALE = (0.08, 0.12, 0.18, 0.26, 0.38)
BLUR_SIGMA_AT_224 = (1.0, 2.0, 3.0, 4.0, 6.0)
JPEG_QUALITY = (25, 18, 15, 10, 7)
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "jpeg_compression", "contrast")


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8), "RGB")


def _noise_rng(key: str, kind: str, severity: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{key}:{kind}:{severity}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def corrupt(image: Image.Image, kind: str, severity: int, key: str) -> Image.Image:
    """``image`` (RGB) under corruption ``kind`` at ``severity`` (1-5); ``key`` (the image's
    sha256) seeds the noise."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; known: {list(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"corruption severity must be one of {SEVERITIES}, got {severity!r}")
    i = severity - 1
    if kind == "gaussian_noise":
        x = _pixels(image)
        return _image(x + _noise_rng(key, kind, severity).normal(0.0, NOISE_SCALE[i], x.shape))
    if kind == "gaussian_blur":
        sigma = BLUR_SIGMA_AT_224[i] * max(image.size) / REFERENCE_SIDE
        return image.filter(ImageFilter.GaussianBlur(radius=sigma))
    if kind == "jpeg_compression":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY[i])
        with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
            return decoded.convert("RGB")
    x = _pixels(image)
    means = x.mean(axis=(0, 1), keepdims=True)
    return _image((x - means) * CONTRAST[i] + means)


def corruption_domain(kind: str, severity: int) -> str:
    return f"{kind}-{severity}"


def corrupted_path(kind: str, severity: int, root: str, path: str) -> str:
    """Where one corrupted copy lives under the corruption root (always a PNG)."""
    return str(PurePosixPath(corruption_domain(kind, severity), root, path).with_suffix(".png"))


def corrupt_test_images(
    splits: pd.DataFrame,
    root_dirs: dict[str, Path],
    root: str,
    kinds: list[str],
    severities: list[int],
    split: str = "test_id",
    into: str = "test_covariate",
) -> pd.DataFrame:
    """Write every (corruption, severity) copy of each image that is in ``split`` in any seed,
    under ``root_dirs[root]``; return the rows to add to the splits table: each seed gets, in
    ``into``, the copies of its own ``split`` images (``domain`` the covariate set, the group,
    class and label of the original)."""
    source = splits[splits["split"] == split]
    if not kinds or source.empty:
        return splits.iloc[0:0]
    out_dir = Path(root_dirs[root])
    originals = source.drop_duplicates("sha256").sort_values(["root", "path"])
    copies: dict[tuple[str, str, int], tuple[str, str]] = {}  # (sha, kind, sev) -> (path, sha)
    sets = [(kind, int(severity)) for kind in kinds for severity in severities]
    for row in tqdm(originals.itertuples(index=False), total=len(originals), desc="corrupt"):
        image = load_rgb(resolve_in_root(root_dirs[row.root], row.path))
        for kind, severity in sets:
            data = png_bytes(corrupt(image, kind, severity, row.sha256))
            rel = corrupted_path(kind, severity, row.root, row.path)
            write_if_changed(out_dir / rel, data)
            copies[(row.sha256, kind, severity)] = (rel, sha256_bytes(data))
    os.sync()  # the copies on disk before the splits table that names them is published
    frames = []
    for kind, severity in sets:
        rel, sha = zip(*(copies[(s, kind, severity)] for s in source["sha256"]), strict=True)
        frames.append(
            source.assign(
                split=into,
                root=root,
                path=list(rel),
                sha256=list(sha),
                domain=corruption_domain(kind, severity),
                mode="RGB",
            )
        )
    return pd.concat(frames, ignore_index=True)
