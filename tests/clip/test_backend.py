"""The CLIP backend: loading, identity, encoding, prompt ensembles, and clear errors for bad input."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from croft_pipeline.clip.backend import (
    encode_class_prompts,
    encode_images,
    encode_texts,
    load_clip,
    load_configured_clip,
)
from croft_pipeline.clip.errors import ClipLoadError, MissingCheckpointError
from croft_pipeline.common.files import sha256_file
from croft_pipeline.data.images import load_rgb
from tests.clip.conftest import TINY, write_checkpoint


def test_loaded_model_is_frozen_and_carries_its_identity(tiny_clip, tiny_checkpoint):
    assert not any(p.requires_grad for p in tiny_clip.model.parameters())
    assert not tiny_clip.model.training
    identity = tiny_clip.identity
    assert identity["model_name"] == TINY
    assert identity["pretrained"] == str(tiny_checkpoint)
    assert len(identity["checkpoint_sha256"]) == 64
    assert tiny_clip.preprocess_cfg["size"] == 32
    assert tiny_clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)


def test_same_checkpoint_same_model_key_other_checkpoint_other_key(
    tiny_clip, tiny_checkpoint, tmp_path
):
    again = load_clip(TINY, tiny_checkpoint, device="cpu")
    assert again.model_key == tiny_clip.model_key
    other = load_clip(TINY, write_checkpoint(tmp_path / "other.safetensors", seed=1), device="cpu")
    assert other.model_key != tiny_clip.model_key
    assert (
        load_clip(TINY, tiny_checkpoint, device="cpu", precision="bf16").model_key
        != tiny_clip.model_key
    )


def test_relative_checkpoint_path_resolves_against_base_dir(tiny_checkpoint):
    loaded = load_clip(TINY, tiny_checkpoint.name, device="cpu", base_dir=tiny_checkpoint.parent)
    assert loaded.identity["checkpoint_sha256"] is not None


def test_encode_images_from_pil_equals_preprocessed_tensor(tiny_clip, image_refs):
    images = [load_rgb(ref.path) for ref in image_refs[:5]]
    from_pil = encode_images(tiny_clip, images)
    pixels = torch.stack([tiny_clip.preprocess_eval(image) for image in images])
    assert from_pil.shape == (5, 32) and from_pil.dtype == torch.float32
    torch.testing.assert_close(from_pil, encode_images(tiny_clip, pixels, batch_size=2))


def test_single_template_is_raw_and_an_ensemble_is_normalized_mean(tiny_clip):
    classes = ["sea_animal", "fruit"]
    single = encode_class_prompts(tiny_clip, classes, "a photo of a {}.")
    torch.testing.assert_close(
        single, encode_texts(tiny_clip, ["a photo of a sea animal.", "a photo of a fruit."])
    )
    templates = ["a photo of a {}.", "art of the {}."]
    ensemble = encode_class_prompts(tiny_clip, classes, templates)
    per_template = torch.stack(
        [F.normalize(encode_class_prompts(tiny_clip, classes, t), dim=-1) for t in templates]
    )
    torch.testing.assert_close(ensemble, F.normalize(per_template.mean(0), dim=-1))


def test_template_without_placeholder_is_rejected(tiny_clip):
    with pytest.raises(ValueError, match="'\\{\\}'"):
        encode_class_prompts(tiny_clip, ["fruit"], ["a photo"])


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(ClipLoadError, match="unknown CLIP model name 'ViT-B-61'.*ViT-B-16"):
        load_clip("ViT-B-61", None)


def test_missing_checkpoint_says_to_run_pretrain(tmp_path):
    with pytest.raises(MissingCheckpointError, match="kedro run --pipeline=pretrain"):
        load_clip(TINY, tmp_path / "nope.safetensors")


def test_checkpoint_of_another_architecture_names_both(tiny_checkpoint):
    with pytest.raises(ClipLoadError, match="does not fit the architecture 'CroftRN-Emoji-64'"):
        load_clip("CroftRN-Emoji-64", tiny_checkpoint)


def test_unknown_tag_lists_the_known_tags():
    with pytest.raises(ClipLoadError, match="known tags: .*openai"):
        load_clip("RN50", "not-a-tag")


def test_bad_precision_is_rejected():
    with pytest.raises(ClipLoadError, match="precision"):
        load_clip(TINY, None, precision="fp8")


def test_hub_tag_offline_fails_at_once_with_advice(tmp_path):
    """In a fresh process (empty HF cache, HF_HUB_OFFLINE=1): a ClipLoadError, not retries."""
    code = (
        "from croft_pipeline.clip.backend import load_clip\n"
        "from croft_pipeline.clip.errors import ClipLoadError\n"
        "try:\n    load_clip('RN50', 'openai')\n"
        "except ClipLoadError as e:\n    print('CLIPLOADERROR', e)\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "XDG_CACHE_HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert "CLIPLOADERROR" in result.stdout, result.stderr[-2000:]
    assert "HF_HUB_OFFLINE=1" in result.stdout and "local checkpoint path" in result.stdout


def _assert_names_file_and_parameter(error: ClipLoadError, path) -> None:
    message = str(error)
    assert str(path) in message and "clip.pretrained" in message
    assert "weights_only=False" not in message and ".safetensors" in message


def test_truncated_safetensors_checkpoint_names_the_file(tiny_checkpoint, tmp_path):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:-1000])
    with pytest.raises(ClipLoadError) as info:
        load_clip(TINY, truncated, device="cpu")
    _assert_names_file_and_parameter(info.value, truncated)
    assert "SafetensorError" in str(info.value)


def test_pickled_checkpoint_is_refused_without_advising_unsafe_loading(tmp_path):
    import argparse

    pickled = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=1)}, pickled)
    with pytest.raises(ClipLoadError) as info:
        load_clip(TINY, pickled, device="cpu")
    _assert_names_file_and_parameter(info.value, pickled)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no torch advice


def test_loading_a_checkpoint_logs_what_was_loaded_not_random_init(tiny_checkpoint, caplog):
    """open_clip's "Model initialized randomly" is untrue here: the checkpoint is loaded after."""
    with caplog.at_level(logging.INFO):
        load_clip(TINY, tiny_checkpoint, device="cpu")
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "initialized randomly" in m or "initialized partially" in m]
    assert any(f"weights from {tiny_checkpoint}" in m for m in messages)


def test_a_model_other_than_the_described_one_names_both(tiny_checkpoint, tmp_path):
    """A stage whose configuration is not the model a spec describes stops, naming both."""
    other = write_checkpoint(tmp_path / "other.safetensors", seed=1)
    clip = {"model_name": TINY, "pretrained": str(other), "device": "cpu"}
    described = sha256_file(tiny_checkpoint)
    with pytest.raises(ClipLoadError) as info:
        load_configured_clip(clip, tmp_path, described, "clip_model_spec.json describes")
    message = str(info.value)
    assert str(other) in message and "clip_model_spec.json describes" in message
    assert sha256_file(other)[:12] in message and described[:12] in message
    assert load_configured_clip(clip, tmp_path, sha256_file(other)).identity["pretrained"]


def test_a_sealed_checkpoint_whose_bytes_changed_is_refused_naming_it(tmp_path):
    """The project's own checkpoints are sealed; one with a flipped bit is never loaded (nor
    reused by pretrain: pretraining.default_model calls the same check)."""
    from safetensors.torch import load_file

    from croft_pipeline.common.files import CorruptFileError, save_safetensors

    plain = write_checkpoint(tmp_path / "plain.safetensors")
    sealed = save_safetensors(tmp_path / "sealed.safetensors", load_file(str(plain)))
    load_clip(TINY, sealed, device="cpu")  # loads as it is
    data = bytearray(sealed.read_bytes())
    data[-1] ^= 0x40
    sealed.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=rf"{sealed}: its bytes changed.*pretrain"):
        load_clip(TINY, sealed, device="cpu")
    load_clip(TINY, plain, device="cpu")  # an unsealed file (a hub download, a user's) loads
