"""Embed images through the feature cache: compute only the rows no chunk holds.

Rows (image sha256, view) are ordered by sha256 and cut into fixed chunks of ``chunk_rows``;
a chunk is the unit of work and of writing, and its rows are always encoded in the same
batches, so a run resumed after a crash produces the same features as an uninterrupted one.
A runner computes the planned chunks: :func:`_compute` here (DataLoader workers decode and
transform images while the model encodes), or Ray Data (:mod:`croft_pipeline.distributed.embed`);
both write the same chunks of the same batches, so either resumes the other's run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from croft_pipeline.clip.backend import LoadedClip, encode_pixels
from croft_pipeline.clip.cache import FeatureCache, cache_folder, row_key
from croft_pipeline.clip.views import ViewRecipe
from croft_pipeline.data.images import load_rgb

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageRef:
    sha256: str
    path: Path


@dataclass(frozen=True)
class EmbedSettings:
    batch_size: int = 128
    chunk_rows: int = 512  # rounded up to a multiple of batch_size
    num_workers: int = 2
    progress: bool = True


# (loaded, rows, keys, recipe, cache, chunks, batches, settings) -> None: writes every chunk
ChunkRunner = Callable[..., None]


class _ViewDataset(Dataset):
    """Row i -> the uint8 pixels of view (image, view) i (normalized per batch by the caller)."""

    def __init__(self, rows: Sequence[tuple[ImageRef, int]], recipe: ViewRecipe):
        self.rows = rows
        self.recipe = recipe

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        image, view = self.rows[index]
        return self.recipe.pixels(load_rgb(image.path), image.sha256, view)


def embed_views(
    loaded: LoadedClip,
    images: Sequence[ImageRef],
    recipe: ViewRecipe,
    n_views: int,
    cache_root: str | Path,
    settings: EmbedSettings = EmbedSettings(),
    runner: ChunkRunner | None = None,
) -> tuple[list[str], torch.Tensor]:
    """Features ``[N, n_views, D]`` for the unique images (by sha256, sorted) and their keys.

    ``runner`` computes the missing chunks (default: :func:`_compute`, in this process)."""
    unique = {image.sha256: image for image in images}
    shas = sorted(unique)
    rows = [(unique[sha], view) for sha in shas for view in range(n_views)]
    keys = [row_key(ref.sha256, view) for ref, view in rows]
    cache = FeatureCache(cache_folder(cache_root, loaded.model_key, recipe.key()))
    cache.write_info(chunk_meta(loaded, recipe))
    index = cache.index()
    todo_chunks, batches = _plan(keys, index, settings)
    n_todo = sum(len(chunk) for chunk in todo_chunks)
    logger.info(
        "embed %s: %d of %d rows cached, %d to compute",
        recipe.kind,
        len(keys) - n_todo,
        len(keys),
        n_todo,
    )
    if n_todo:
        (runner or _compute)(loaded, rows, keys, recipe, cache, todo_chunks, batches, settings)
        index = cache.index()
    if not keys:
        return shas, torch.empty(0, n_views, loaded.embed_dim)
    return shas, cache.read(keys, index).view(len(shas), n_views, -1)


def chunk_meta(loaded: LoadedClip, recipe: ViewRecipe) -> dict[str, Any]:
    """What every chunk (and ``info.json``) of a cache folder records about its rows."""
    return {"model": loaded.identity, "recipe": recipe.describe()}


def _plan(
    keys: Sequence[str], index: dict[str, Path], settings: EmbedSettings
) -> tuple[list[list[int]], list[list[int]]]:
    """Chunks (row indices) with missing rows, and the batches that compute them."""
    per_chunk = -(-max(settings.chunk_rows, 1) // settings.batch_size) * settings.batch_size
    chunks, batches = [], []
    for start in range(0, len(keys), per_chunk):
        missing = [
            row for row in range(start, min(start + per_chunk, len(keys))) if keys[row] not in index
        ]
        if missing:
            chunks.append(missing)
            batches.extend(
                missing[i : i + settings.batch_size]
                for i in range(0, len(missing), settings.batch_size)
            )
    return chunks, batches


def _compute(
    loaded: LoadedClip,
    rows: Sequence[tuple[ImageRef, int]],
    keys: Sequence[str],
    recipe: ViewRecipe,
    cache: FeatureCache,
    chunks: list[list[int]],
    batches: list[list[int]],
    settings: EmbedSettings,
) -> None:
    loader = DataLoader(
        _ViewDataset(rows, recipe),
        batch_sampler=batches,
        num_workers=settings.num_workers,
        pin_memory=loaded.device.type == "cuda",
        prefetch_factor=4 if settings.num_workers else None,
    )
    chunk_of_row = {row: number for number, chunk in enumerate(chunks) for row in chunk}
    pending: dict[int, list[torch.Tensor]] = {}
    meta = chunk_meta(loaded, recipe)
    bar = tqdm(
        total=sum(map(len, chunks)),
        unit="img",
        desc=f"embed {recipe.kind}",
        disable=not settings.progress,
    )
    with bar, torch.inference_mode(), loaded.autocast():
        for batch_rows, pixels in zip(batches, loader, strict=True):
            number = chunk_of_row[batch_rows[0]]
            pixels = pixels.to(loaded.device, non_blocking=True)
            features = encode_pixels(loaded, recipe.normalize(pixels))
            pending.setdefault(number, []).append(features)
            if sum(map(len, pending[number])) == len(chunks[number]):
                chunk_keys = [keys[row] for row in chunks[number]]
                cache.write_chunk(chunk_keys, torch.cat(pending.pop(number)), meta)
            bar.update(len(batch_rows))
