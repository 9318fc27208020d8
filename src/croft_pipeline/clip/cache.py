"""A content-addressed cache of feature rows, stored as safetensors chunk files.

A cache folder holds the rows of one (model identity, view recipe) pair, e.g.
``data/04_feature/cache/<model_key>/<recipe_key>/chunk-<hash>.safetensors``. A row is keyed by
``"<image sha256>:<view index>"``. Chunks are written atomically (temp file, fsync, rename), so a
run killed part-way leaves only whole chunks (plus ignorable ``.tmp`` files); the next run
computes just the rows no chunk holds. Every chunk is sealed with the digest of its bytes
(:func:`croft_pipeline.common.files.read_safetensors`): a chunk whose bytes changed is an error
naming it when its rows are read, never rows used or recomputed silently; non-finite rows are
refused when written and when read; a chunk whose header cannot be read is an error too. A
chunk without a digest (an older version's) is ignored with a warning and its rows are
recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from croft_pipeline.common.features import check_finite
from croft_pipeline.common.files import (
    DIGEST_KEY,
    CorruptFileError,
    atomic_write,
    load_safetensors,
    safetensors_metadata,
    save_safetensors,
)

logger = logging.getLogger(__name__)

CHUNK_GLOB = "chunk-*.safetensors"
DELETE_CHUNK = "delete it: the next `kedro run --pipeline=embed` recomputes its rows"


def row_key(image_sha256: str, view: int) -> str:
    return f"{image_sha256}:{view}"


def cache_folder(cache_root: str | Path, model_key: str, recipe_key: str) -> Path:
    return Path(cache_root) / model_key / recipe_key


class FeatureCache:
    """Rows of features in one cache folder; see the module docstring for the layout."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def chunk_files(self) -> list[Path]:
        return sorted(self.folder.glob(CHUNK_GLOB))

    def index(self) -> dict[str, Path]:
        """Map every cached row key to the chunk file holding it (unreadable chunks are skipped)."""
        index: dict[str, Path] = {}
        for path in self.chunk_files():
            keys = _chunk_keys(path)
            for key in keys or ():
                index.setdefault(key, path)
        return index

    def write_chunk(
        self, keys: Sequence[str], features: torch.Tensor, meta: dict[str, Any] | None = None
    ) -> Path:
        """Atomically write one chunk of rows ``features [len(keys), D]``."""
        if features.ndim != 2 or features.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys for features of shape {tuple(features.shape)}")
        check_finite(features, list(keys), f"new rows of cache {self.folder}")
        name = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
        path = self.folder / f"chunk-{name}.safetensors"
        tensors = {"features": features.detach().to(torch.float32).contiguous().cpu()}
        header = {"keys": json.dumps(list(keys)), "meta": json.dumps(meta or {}, sort_keys=True)}
        return save_safetensors(path, tensors, header)

    def read(self, keys: Sequence[str], index: dict[str, Path] | None = None) -> torch.Tensor:
        """Features ``[len(keys), D]`` in the order of ``keys``; a missing key is a KeyError."""
        index = self.index() if index is None else index
        missing = [key for key in keys if key not in index]
        if missing:
            raise KeyError(f"{len(missing)} rows not in cache {self.folder}, first: {missing[0]!r}")
        rows: dict[str, torch.Tensor] = {}
        for path in sorted({index[key] for key in keys}):
            tensors, metadata = load_safetensors(path, DELETE_CHUNK)
            chunk, chunk_keys = tensors["features"], json.loads(metadata["keys"])
            check_finite(chunk, chunk_keys, f"cache chunk {path} ({DELETE_CHUNK})")
            for row, key in enumerate(chunk_keys):
                if index.get(key) == path:
                    rows[key] = chunk[row]
        return torch.stack([rows[key] for key in keys]) if keys else torch.empty(0, 0)

    def write_info(self, info: dict[str, Any]) -> None:
        """A human-readable ``info.json`` describing the model and recipe of this folder."""
        path = self.folder / "info.json"
        if not path.is_file():
            text = json.dumps(info, indent=2, sort_keys=True).encode()
            atomic_write(path, lambda tmp: tmp.write_bytes(text))


def _chunk_keys(path: Path) -> list[str] | None:
    """The row keys a chunk holds; ``None`` for an older version's chunk (no digest: recomputed).
    A chunk whose header is not readable is a :class:`CorruptFileError` naming it."""
    try:
        metadata = safetensors_metadata(path)
        if DIGEST_KEY not in metadata:
            logger.warning(
                "ignoring cache chunk %s: written before chunks were sealed; its rows are "
                "recomputed",
                path,
            )
            return None
        return json.loads(metadata["keys"])
    except (CorruptFileError, OSError, KeyError, ValueError) as error:
        raise CorruptFileError(
            f"{path}: unreadable cache chunk ({error}); {DELETE_CHUNK}"
        ) from None
