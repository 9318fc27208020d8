"""ImageNet-C-style corruptions: deterministic bytes, severities that differ and grow, one
covariate set per (corruption, severity), each seed given its own ID test images' copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from croft_pipeline.common.files import sha256_bytes
from croft_pipeline.data.corruptions import CORRUPTIONS, corrupt, corrupt_test_images
from croft_pipeline.data.emojishift import png_bytes
from croft_pipeline.data.splits import SPLIT_COLUMNS


def glyph(seed: int = 0) -> Image.Image:
    """A 64 px emoji-like image: coloured shapes on white."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.integers(4, 40, 2)
        draw.ellipse((x, y, x + 20, y + 20), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def mse(a: Image.Image, b: Image.Image) -> float:
    return float(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2))


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_corruption_gives_the_same_bytes_twice_and_grows_with_severity(kind):
    image = glyph()
    outputs = {s: png_bytes(corrupt(image, kind, s, "sha")) for s in (1, 3, 5)}
    assert outputs == {s: png_bytes(corrupt(glyph(), kind, s, "sha")) for s in (1, 3, 5)}
    assert len(set(outputs.values())) == 3  # every severity is another set
    errors = [mse(image, corrupt(image, kind, s, "sha")) for s in (1, 2, 3, 4, 5)]
    assert errors[0] > 0 and all(a < b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert corrupt(image, kind, 3, "sha").size == image.size


def test_noise_is_seeded_by_the_image_and_the_corruption():
    image = glyph()
    first = png_bytes(corrupt(image, "gaussian_noise", 3, "a"))
    assert first != png_bytes(corrupt(image, "gaussian_noise", 3, "b"))


@pytest.mark.parametrize(("kind", "severity"), [("fog", 1), ("contrast", 6)])
def test_unknown_corruption_or_severity_is_an_error(kind, severity):
    with pytest.raises(ValueError, match="corruption"):
        corrupt(glyph(), kind, severity, "sha")


def _splits(tmp_path) -> pd.DataFrame:
    """Seed 1 tests images 0 and 1, seed 2 images 1 and 2 (image 3 is train in both)."""
    rows = []
    for i in range(4):
        data = png_bytes(glyph(i))
        path = f"noto/cat/U+{i:04X}_v0.png"
        (tmp_path / "main" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "main" / path).write_bytes(data)
        for seed, tested in ((1, {0, 1}), (2, {1, 2})):
            split = "test_id" if i in tested else "train"
            rows.append(
                dict(seed=seed, split=split, root="main", path=path, sha256=sha256_bytes(data),
                     domain="noto", class_name="cat", label=0, role="id", group=f"g{i}",
                     width=64, height=64, mode="RGB")
            )  # fmt: skip
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS)


def test_each_seed_gets_the_copies_of_its_own_test_images(tmp_path):
    splits = _splits(tmp_path)
    roots = {"main": tmp_path / "main", "corrupted": tmp_path / "corrupted"}
    copies = corrupt_test_images(splits, roots, "corrupted", ["contrast", "gaussian_blur"], [1, 5])
    assert set(copies["split"]) == {"test_covariate"} and set(copies["root"]) == {"corrupted"}
    assert sorted(copies["domain"].unique()) == [
        "contrast-1", "contrast-5", "gaussian_blur-1", "gaussian_blur-5"
    ]  # fmt: skip
    for seed, tested in ((1, {"g0", "g1"}), (2, {"g1", "g2"})):
        mine = copies[copies["seed"] == seed]
        assert set(mine["group"]) == tested and len(mine) == 2 * 4
    written = sorted(p.relative_to(roots["corrupted"]) for p in roots["corrupted"].rglob("*.png"))
    assert len(written) == 3 * 4  # the union of the seeds' test images, once each
    for row in copies.itertuples():
        assert sha256_bytes((roots["corrupted"] / row.path).read_bytes()) == row.sha256
    assert not set(copies["sha256"]) & set(splits["sha256"])
    again = corrupt_test_images(splits, roots, "corrupted", ["contrast", "gaussian_blur"], [1, 5])
    pd.testing.assert_frame_equal(copies, again)


def test_no_corruptions_add_no_rows(tmp_path):
    splits = _splits(tmp_path)
    assert corrupt_test_images(splits, {"main": tmp_path / "main"}, "corrupted", [], [1]).empty
