"""Views: the center view is open_clip's own; augmented views are seeded per image and view."""

from __future__ import annotations

import pytest
import torch

from croft_pipeline.clip.views import AUGMENT, CENTER, random_resized_crop_box
from croft_pipeline.data.images import load_rgb
from tests.data.image_factory import noise_image


@pytest.mark.parametrize("size", [(24, 20), (32, 32), (20, 50)])
def test_center_view_is_the_models_own_preprocessing(tiny_clip, size):
    image = noise_image(3, size=size)
    assert torch.equal(tiny_clip.view_recipe(CENTER)(image), tiny_clip.preprocess_eval(image))


def test_augmented_views_repeat_per_image_and_view_and_differ_otherwise(tiny_clip, image_refs):
    recipe = tiny_clip.view_recipe(AUGMENT)
    ref = image_refs[3]
    image = load_rgb(ref.path)
    first = recipe(image, ref.sha256, 0)
    assert first.shape == (3, 32, 32)
    assert torch.equal(first, recipe(load_rgb(ref.path), ref.sha256, 0))
    assert not torch.equal(first, recipe(image, ref.sha256, 1))
    reseeded = tiny_clip.view_recipe(AUGMENT, seed=7)
    assert not torch.equal(first, reseeded(image, ref.sha256, 0))


def test_recipe_key_changes_with_anything_that_changes_pixels(tiny_clip):
    base = tiny_clip.view_recipe(AUGMENT)
    assert base.key() == tiny_clip.view_recipe(AUGMENT).key()
    assert base.key() != tiny_clip.view_recipe(AUGMENT, scale=(0.5, 1.0)).key()
    assert base.key() != tiny_clip.view_recipe(AUGMENT, flip=False).key()
    assert base.key() != tiny_clip.view_recipe(CENTER).key()
    other_norm = type(base)(kind=AUGMENT, preprocess={**base.preprocess, "mean": [0.5, 0.5, 0.5]})
    assert base.key() != other_norm.key()
    # augmentation settings do not touch the center view
    center = tiny_clip.view_recipe(CENTER)
    assert center.key() == type(center)(kind=CENTER, preprocess=center.preprocess, seed=3).key()


def test_crop_boxes_stay_inside_the_image():
    generator = torch.Generator().manual_seed(0)
    for width, height in [(64, 64), (40, 20), (7, 90)]:
        for _ in range(200):
            top, left, h, w = random_resized_crop_box(
                width, height, (0.08, 1.0), (3 / 4, 4 / 3), generator
            )
            assert min(top, left) >= 0 and min(h, w) > 0
            assert top + h <= height and left + w <= width
