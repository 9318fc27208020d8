"""Small image files for tests: good ones in every PIL mode, and every kind of bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

# EXIF orientation 6: the stored pixels must be turned 90 degrees clockwise to be upright
EXIF_ROTATE_90 = 6


def noise_image(seed: int, size: tuple[int, int] = (24, 20), mode: str = "RGB") -> Image.Image:
    """A distinct image per seed (so no two files share a sha256)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode == "P":
        return image.quantize(16)
    return image.convert(mode)


def write_image(path: Path, seed: int, fmt: str = "PNG", mode: str = "RGB", **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise_image(seed, mode=mode, size=kwargs.pop("size", (24, 20))).save(path, format=fmt, **kwargs)
    return path


def write_exif_rotated_jpeg(path: Path, seed: int, size: tuple[int, int] = (40, 20)) -> Path:
    """A JPEG stored landscape (40x20) whose EXIF says: show it portrait (20x40)."""
    image = noise_image(seed, size=size)
    exif = Image.Exif()
    exif[0x0112] = EXIF_ROTATE_90
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", exif=exif.tobytes())
    return path


def png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    noise_image(seed).save(buffer, format="PNG")
    return buffer.getvalue()


def write_bad_inputs(folder: Path, seed: int = 10_000) -> dict[str, Path]:
    """One file of each unusable kind in ``folder``; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    good = png_bytes(seed)
    files = {
        "zero_byte": folder / "empty.png",
        "not_image": folder / "notes.png",
        "truncated": folder / "truncated.png",
        "corrupt": folder / "corrupt.png",
    }
    files["zero_byte"].write_bytes(b"")
    files["not_image"].write_text("this is not an image\n")
    files["truncated"].write_bytes(good[: len(good) // 2])
    corrupt = bytearray(good)
    middle = len(corrupt) // 2
    corrupt[middle : middle + 64] = bytes(64)  # a valid header, compressed data zeroed out
    files["corrupt"].write_bytes(bytes(corrupt))
    return files


def build_domain_tree(
    root: Path,
    domains: list[str],
    classes: list[str],
    per_class: int,
    seed: int = 0,
    fmt: str = "PNG",
) -> int:
    """``root/<domain>/<class>/img_<i>.<ext>`` with distinct images; returns how many."""
    count = 0
    for d, domain in enumerate(domains):
        for c, name in enumerate(classes):
            for i in range(per_class):
                ext = "jpg" if fmt == "JPEG" else "png"
                write_image(
                    root / domain / name / f"img_{i}.{ext}", seed + 100_000 * d + 1_000 * c + i, fmt
                )
                count += 1
    return count


SCENE_DOMAINS = {"photo": "colour", "painting": "posterized", "sketch": "edges"}
SCENE_SIZES = [(50, 70), (300, 200), (120, 90), (64, 64), (200, 150), (90, 160)]
SCENE_MODES = [("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG")]


def scene_image(seed: int, subject: int, size: tuple[int, int], style: str) -> Image.Image:
    """A photo-like RGB scene: sky and ground, a subject shape per class, sensor noise; ``style``
    (``colour`` | ``posterized`` | ``edges``) is the domain's look."""
    rng = np.random.default_rng(seed)
    width, height = size
    sky, ground = rng.integers(60, 230, 3), rng.integers(20, 160, 3)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    horizon = rng.uniform(0.45, 0.75)
    base = np.where(rows < horizon, sky * (0.6 + 0.4 * rows), ground * (1.2 - 0.4 * rows))
    image = Image.fromarray(np.broadcast_to(base, (height, width, 3)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    cx, cy = width * rng.uniform(0.3, 0.7), height * rng.uniform(0.35, 0.65)
    r = min(width, height) * rng.uniform(0.15, 0.3)
    box = (cx - r, cy - r, cx + r, cy + r)
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    shapes = [
        lambda: draw.ellipse(box, fill=fill),
        lambda: draw.rectangle(box, fill=fill),
        lambda: draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill),
        lambda: draw.line(
            [(cx - r, cy - r), (cx + r, cy + r)], fill=fill, width=max(2, int(r / 3))
        ),
        lambda: draw.regular_polygon((cx, cy, r), 6, fill=fill),
    ]
    shapes[subject % len(shapes)]()
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")
    if style == "posterized":
        return ImageOps.posterize(image.filter(ImageFilter.SMOOTH_MORE), 3)
    if style == "edges":
        return ImageOps.invert(image.convert("L").filter(ImageFilter.FIND_EDGES)).convert("RGB")
    return image


def build_scene_tree(root: Path, classes: list[str], per_class: int, seed: int = 0) -> int:
    """``root/<domain>/<class>/<i>.jpg|png`` scenes in every domain of :data:`SCENE_DOMAINS`,
    cycling through :data:`SCENE_SIZES` and :data:`SCENE_MODES`; returns how many."""
    count = 0
    for d, (domain, style) in enumerate(SCENE_DOMAINS.items()):
        for c, name in enumerate(classes):
            for i in range(per_class):
                mode, fmt = SCENE_MODES[count % len(SCENE_MODES)]
                size = SCENE_SIZES[count % len(SCENE_SIZES)]
                image = scene_image(seed + 100_000 * d + 1_000 * c + i, c, size, style)
                path = root / domain / name / f"{i}.{'jpg' if fmt == 'JPEG' else 'png'}"
                path.parent.mkdir(parents=True, exist_ok=True)
                (image.quantize(64) if mode == "P" else image.convert(mode)).save(path, fmt)
                count += 1
    return count
