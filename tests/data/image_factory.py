"""Small image files for tests: good ones in every PIL mode, and every kind of bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

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
