"""Fixtures for the CLIP core tests: the tiny project model, small image files, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from croft_pipeline.clip.backend import load_clip
from croft_pipeline.clip.embedding import ImageRef
from croft_pipeline.common.files import sha256_file
from croft_pipeline.pretraining.contrastive import create_trainable_model
from tests.data.image_factory import write_image

TINY = "CroftRN-Tiny-32"


def write_checkpoint(path: Path, model_name: str = TINY, seed: int = 0) -> Path:
    """A randomly initialised (seeded) open_clip state dict as safetensors."""
    model = create_trainable_model(model_name, seed)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from two threads, and OpenMP threads spin on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_clip(tiny_checkpoint):
    return load_clip(TINY, tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def image_refs(tmp_path_factory) -> list[ImageRef]:
    """40 distinct small PNG files of mixed sizes."""
    folder = tmp_path_factory.mktemp("images")
    refs = []
    for seed in range(40):
        path = write_image(folder / f"{seed}.png", seed, size=(24 + seed % 7, 20 + seed % 5))
        refs.append(ImageRef(sha256_file(path), path))
    return refs
