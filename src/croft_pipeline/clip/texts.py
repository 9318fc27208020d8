"""Text features of many prompts (NegLabel's vocabulary), cached by content like image features.

A row is keyed by the sha256 of its prompt, in the cache folder of the model and the ``text``
recipe (:mod:`croft_pipeline.clip.cache`): a rerun encodes only prompts no chunk holds, a killed
run leaves whole chunks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from croft_pipeline.clip.backend import LoadedClip, class_prompts, encode_texts, pooled_prompts
from croft_pipeline.clip.cache import FeatureCache, cache_folder, row_key

logger = logging.getLogger(__name__)

TEXT_RECIPE = "text-v1"  # the cache folder of prompt features (raw encode_text output)
TEXT_CHUNK_ROWS = 4096


def prompt_key(prompt: str) -> str:
    return row_key(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 0)


def embed_prompts(
    loaded: LoadedClip,
    prompts: Sequence[str],
    cache_root: str | Path,
    batch_size: int = 256,
    chunk_rows: int = TEXT_CHUNK_ROWS,
    progress: bool = True,
) -> torch.Tensor:
    """Raw text features ``[len(prompts), D]`` of the distinct ``prompts``, from the cache where
    it holds them, encoded (with a progress bar) and cached where not."""
    keys = [prompt_key(prompt) for prompt in prompts]
    cache = FeatureCache(cache_folder(cache_root, loaded.model_key, TEXT_RECIPE))
    cache.write_info({"model": loaded.identity, "recipe": TEXT_RECIPE})
    index = cache.index()
    first_rows = {key: row for row, key in reversed(list(enumerate(keys)))}
    todo = sorted(row for key, row in first_rows.items() if key not in index)
    logger.info("embed prompts: %d of %d cached", len(keys) - len(todo), len(keys))
    with tqdm(total=len(todo), unit="prompt", desc="embed prompts", disable=not progress) as bar:
        for start in range(0, len(todo), chunk_rows):
            rows = todo[start : start + chunk_rows]
            features = encode_texts(loaded, [prompts[row] for row in rows], batch_size, trim=True)
            cache.write_chunk([keys[row] for row in rows], features, {"recipe": TEXT_RECIPE})
            bar.update(len(rows))
    if not keys:
        return torch.empty(0, loaded.embed_dim)
    return cache.read(keys, cache.index() if todo else index)


def embed_class_names(
    loaded: LoadedClip,
    names: Sequence[str],
    templates: Sequence[str],
    cache_root: str | Path,
    progress: bool = True,
) -> torch.Tensor:
    """Class features ``[len(names), D]`` of many class names under ``templates``, pooled as
    :func:`~croft_pipeline.clip.backend.encode_class_prompts` pools them, cached by prompt."""
    prompts, n_templates = class_prompts(names, list(templates))
    return pooled_prompts(
        embed_prompts(loaded, prompts, cache_root, progress=progress), n_templates
    )
