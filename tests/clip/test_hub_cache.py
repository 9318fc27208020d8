"""A hub tag resolved offline from the local Hugging Face cache: ``load_clip(model, "openai")``
with ``HF_HUB_OFFLINE=1`` loads exactly the weights in the cache, and without them fails with the
project's ClipLoadError, with the network cut throughout.

The cache is a fake one in ``tmp_path``, laid out as huggingface_hub writes it
(``models--<org>--<name>/{blobs/<sha256>, snapshots/<revision>/<file> -> blob, refs/main}``),
holding seeded random weights of the right shapes. ``RN50``/``openai`` is the cheapest OpenAI
CLIP tag (102M parameters); like every ``openai`` tag it has an HF-hub mirror, which open_clip
prefers to the tag's download URL. The tag's weights were trained with QuickGELU, which the
plain ``RN50`` config lacks: load_clip must build the model with it.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import open_clip
import pytest
import torch
from open_clip.constants import HF_SAFE_WEIGHTS_NAME
from open_clip.pretrained import get_pretrained_cfg
from PIL import Image
from safetensors.torch import save_file

from croft_pipeline.clip.backend import _tag_overrides, encode_images, encode_texts, load_clip
from croft_pipeline.clip.errors import ClipLoadError
from croft_pipeline.common.files import sha256_file
from tests.network_guard import loopback_only

MODEL, TAG = "RN50", "openai"
REVISION = "0123456789abcdef0123456789abcdef01234567"  # a commit hash, as the hub's refs hold
LOGIT_SCALE = 42.0  # exp(logit_scale) in the fake weights (open_clip initialises 1 / 0.07)


def hub_repo() -> str:
    """The HF-hub repository open_clip fetches ``MODEL``/``TAG`` from (``org/name``)."""
    hf_hub = get_pretrained_cfg(MODEL, TAG)["hf_hub"]
    repo_id, filename = os.path.split(hf_hub)
    assert repo_id.count("/") == 1 and not filename, hf_hub  # the repo's default weights file
    return repo_id


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Iterator[Path]:
    """An empty HF hub cache in ``tmp_path``, offline (deleted afterwards: the weights are 400 MB).
    huggingface_hub reads HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE once, on import, so its
    constants are set too."""
    home = tmp_path / "hf"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield cache
    shutil.rmtree(home)


def cache_weights(cache: Path, state: dict[str, torch.Tensor]) -> Path:
    """Write ``state`` where a download of the tag's weights would have put it; its snapshot path."""
    org, name = hub_repo().split("/")
    repo = cache / f"models--{org}--{name}"
    staged = repo / "weights.tmp"
    repo.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(staged))
    blob = repo / "blobs" / sha256_file(staged)  # an LFS file's etag is its sha256
    blob.parent.mkdir()
    staged.rename(blob)
    snapshot = repo / "snapshots" / REVISION / HF_SAFE_WEIGHTS_NAME
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)  # no newline, as huggingface_hub writes it
    return snapshot


def fake_weights(seed: int = 1234) -> dict[str, torch.Tensor]:
    """``MODEL``'s state dict, randomly initialised from another seed than load_clip's own, with
    a logit scale no initialisation gives."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(MODEL)
    state = model.state_dict()
    state["logit_scale"] = torch.full_like(state["logit_scale"], math.log(LOGIT_SCALE))
    return state


@pytest.mark.filterwarnings("error:QuickGELU mismatch")  # open_clip's warning: a GELU build
def test_openai_tag_loads_the_weights_in_the_local_hub_cache_offline(hub_cache):
    state = fake_weights()
    snapshot = cache_weights(hub_cache, state)

    with loopback_only() as attempts:
        loaded = load_clip(MODEL, TAG, device="cpu")
        image = encode_images(loaded, [Image.new("RGB", (64, 48), (200, 30, 90))])
        text = encode_texts(loaded, ["a photo of a dog."])
    assert attempts == []

    assert loaded.identity == {
        "model_name": MODEL,
        "pretrained": TAG,
        "checkpoint_sha256": snapshot.resolve().name,  # the blob: named by its sha256
        "precision": "fp32",
        "force_quick_gelu": True,
    }
    # OpenAI's weights were trained with QuickGELU (RN50: in its text transformer)
    assert any(isinstance(m, open_clip.transformer.QuickGELU) for m in loaded.model.modules())
    assert loaded.logit_scale == pytest.approx(LOGIT_SCALE, rel=1e-6)
    loaded_state = loaded.model.state_dict()
    assert set(loaded_state) == set(state)
    for key in ("visual.conv1.weight", "visual.attnpool.c_proj.weight", "text_projection"):
        assert torch.equal(loaded_state[key], state[key]), key
    assert loaded.preprocess_cfg["size"] in (224, (224, 224))
    assert image.shape == (1, 1024) and text.shape == (1, 1024) == (1, loaded.embed_dim)
    assert torch.isfinite(image).all() and torch.isfinite(text).all()


def test_openai_tag_without_the_weights_cached_is_a_clear_error_offline(hub_cache):
    with loopback_only() as attempts, pytest.raises(ClipLoadError) as info:
        load_clip(MODEL, TAG, device="cpu")
    assert attempts == []
    message = str(info.value)
    assert f"pretrained={TAG!r} for {MODEL!r}" in message and "HF_HUB_OFFLINE=1" in message
    assert "not in the local cache" in message and "local checkpoint path" in message
    assert not any(hub_cache.iterdir())  # nothing was written into the cache either


def test_the_fake_cache_is_laid_out_as_huggingface_hub_reads_it(hub_cache):
    """The layout itself, by huggingface_hub's own cache reader (independent of open_clip)."""
    snapshot = cache_weights(hub_cache, {"logit_scale": torch.zeros(())})
    found = huggingface_hub.try_to_load_from_cache(hub_repo(), HF_SAFE_WEIGHTS_NAME)
    assert found == str(snapshot)
    blob = snapshot.resolve()
    assert (
        blob.parent.name == "blobs" and blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()
    )


@pytest.mark.parametrize(
    ("model_name", "tag", "overrides"),
    [
        ("ViT-B-16", "openai", {"force_quick_gelu": True}),  # conf/pacs, conf/vlcs
        ("RN50", "openai", {"force_quick_gelu": True}),
        ("ViT-B-16-quickgelu", "openai", {}),  # the config has it already
        ("ViT-B-32", "laion2b_s34b_b79k", {}),  # trained with GELU
        ("RN50", None, {}),  # a local checkpoint or random weights: the config as it is
    ],
)
def test_openai_tags_build_quick_gelu_models(model_name, tag, overrides):
    assert _tag_overrides(model_name, tag) == overrides
