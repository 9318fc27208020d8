"""Safe decoding: each bad file gets a reason; odd modes and EXIF rotation decode correctly."""

from __future__ import annotations

import pytest
from PIL import Image

from croft_pipeline.data.images import ImageDecodeError, inspect_image, load_rgb
from tests.data.image_factory import write_bad_inputs, write_exif_rotated_jpeg, write_image


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("zero_byte", "empty file"),
        ("not_image", "not an image"),
        ("truncated", "truncated"),
        ("corrupt", "corrupt"),
    ],
)
def test_bad_files_raise_a_reason(tmp_path, kind, reason):
    path = write_bad_inputs(tmp_path)[kind]
    with pytest.raises(ImageDecodeError, match=reason):
        inspect_image(path)


def test_load_rgb_names_the_file(tmp_path):
    path = write_bad_inputs(tmp_path)["truncated"]
    with pytest.raises(ImageDecodeError, match="truncated.png"):
        load_rgb(path)


@pytest.mark.parametrize(
    ("mode", "fmt"), [("L", "PNG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG")]
)
def test_every_mode_decodes_to_rgb_and_keeps_its_original_mode(tmp_path, mode, fmt):
    path = write_image(tmp_path / f"image.{fmt.lower()}", seed=1, fmt=fmt, mode=mode)
    info = inspect_image(path)
    assert info.mode == mode
    assert (info.width, info.height) == (24, 20)
    assert load_rgb(path).mode == "RGB"


def test_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(path)
    assert load_rgb(path).getpixel((3, 3)) == (255, 255, 255)


def test_exif_rotated_jpeg_is_upright(tmp_path):
    path = write_exif_rotated_jpeg(tmp_path / "rotated.jpg", seed=2, size=(40, 20))
    info = inspect_image(path)
    assert (info.width, info.height) == (20, 40)
    assert load_rgb(path).size == (20, 40)


def test_decompression_bomb_is_refused(tmp_path):
    path = write_image(tmp_path / "big.png", seed=3, size=(300, 300))
    with pytest.raises(ImageDecodeError, match="decompression-bomb"):
        inspect_image(path, max_pixels=300 * 299)
