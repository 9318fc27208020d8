"""Safe image decoding: every failure becomes a reason string, never a stack trace."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from croft_pipeline.common.files import sha256_bytes

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold
# The image sides (px, after EXIF orientation) the manifest keeps: ``ingest.validation`` min_side
# and max_side, by default these. The manifest skips an image outside them (with the reason) and
# the validation gate checks the same bounds, so a small or huge file never stops a run.
DEFAULT_MIN_SIDE, DEFAULT_MAX_SIDE = 16, 8192


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    width: int  # after EXIF orientation
    height: int
    mode: str  # the decoded PIL mode before conversion to RGB


class ImageDecodeError(ValueError):
    """A file that is not a usable image; the message says why."""


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """EXIF-upright RGB; transparent pixels (RGBA, LA, palette transparency) over ``background``."""
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        # 16/32-bit greyscale: scale to 8 bit instead of clipping at 255
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


def decode_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, str]:
    """Fully decode ``data`` into an upright RGB image; returns (image, original mode).

    Raises ImageDecodeError (empty, not an image, truncated, corrupt, too large).
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise ImageDecodeError(
                    f"image too large ({image.width}x{image.height} > {max_pixels} pixels, "
                    "decompression-bomb limit)"
                )
            mode = image.mode
            image.load()
            return to_rgb(image), mode
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (Pillow cannot identify the format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"decompression-bomb limit: {error}") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, MemoryError) as error:
        raise ImageDecodeError(
            f"corrupt or truncated image ({type(error).__name__}: {error})"
        ) from None


def side_limits(validation: dict | None) -> tuple[int, int]:
    """``(min_side, max_side)`` of the ``ingest.validation`` block (defaults where unset)."""
    validation = validation or {}
    return (
        int(validation.get("min_side", DEFAULT_MIN_SIDE)),
        int(validation.get("max_side", DEFAULT_MAX_SIDE)),
    )


def side_problem(width: int, height: int, limits: tuple[int, int]) -> str | None:
    """Why an image of this size is not used (a side outside ``limits``), or None."""
    least, most = limits
    if least <= min(width, height) and max(width, height) <= most:
        return None
    return (
        f"image is {width}x{height} px; its sides must be {least} to {most} px "
        "(ingest.validation.min_side, max_side)"
    )


def inspect_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """sha256 of the file bytes and the decoded size/mode; raises ImageDecodeError."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ImageDecodeError(f"cannot read file ({error.strerror or error})") from None
    image, mode = decode_bytes(data, max_pixels)
    return ImageInfo(sha256_bytes(data), image.width, image.height, mode)


def load_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The image as the models see it (upright RGB); raises ImageDecodeError naming the file."""
    try:
        data = Path(path).read_bytes()
        return decode_bytes(data, max_pixels)[0]
    except (ImageDecodeError, OSError) as error:
        raise ImageDecodeError(f"{path}: {error}") from None
