"""FeatureTable: rows of cached CLIP features keyed by an id, saved as safetensors.

One table holds ``features`` of shape ``[N, V, D]`` (N rows, V views per row, D dims, float32),
``keys`` (one string per row: an image sha256, or a class name for text features) and ``meta``
(JSON-serialisable provenance: model identity, preprocessing, view names...).
Saved with safetensors only (no pickle): the keys and meta travel in the file's header, which is
sealed with a digest checked on load (:mod:`croft_pipeline.common.files`). Features must be finite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from croft_pipeline.common.files import load_safetensors, save_safetensors

REWRITE = (
    "rerun the pipeline that writes it (docs/architecture.md §1), or delete it and `dvc repro`"
)


@dataclass(frozen=True)
class FeatureTable:
    keys: list[str]
    features: torch.Tensor  # [N, V, D] float32
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features.ndim != 3:
            raise ValueError(f"features must be [N, V, D], got shape {tuple(self.features.shape)}")
        if len(self.keys) != self.features.shape[0]:
            raise ValueError(f"{len(self.keys)} keys for {self.features.shape[0]} feature rows")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("FeatureTable keys must be unique")
        check_finite(self.features, self.keys, "feature table")

    @property
    def n_views(self) -> int:
        return int(self.features.shape[1])

    def index_of(self) -> dict[str, int]:
        return {key: row for row, key in enumerate(self.keys)}

    def select(self, keys: list[str]) -> torch.Tensor:
        """Features ``[len(keys), V, D]`` in the order of ``keys``; a missing key is a KeyError."""
        index = self.index_of()
        missing = [key for key in keys if key not in index]
        if missing:
            raise KeyError(f"{len(missing)} keys not in the feature table, first: {missing[0]!r}")
        return self.features[torch.tensor([index[key] for key in keys], dtype=torch.long)]

    def save(self, path: str | Path) -> Path:
        metadata = {"keys": json.dumps(self.keys), "meta": json.dumps(self.meta, sort_keys=True)}
        tensors = {"features": self.features.detach().to(torch.float32).contiguous().cpu()}
        return save_safetensors(path, tensors, metadata)

    @classmethod
    def load(cls, path: str | Path) -> FeatureTable:
        """The table in ``path``: its digest checked, its features finite (else an error)."""
        tensors, metadata = load_safetensors(path, REWRITE)
        if "keys" not in metadata:
            raise ValueError(
                f"{path}: not a FeatureTable file (no 'keys' in its safetensors header)"
            )
        try:
            return cls(
                keys=json.loads(metadata["keys"]),
                features=tensors["features"],
                meta=json.loads(metadata.get("meta", "{}")),
            )
        except ValueError as error:
            raise ValueError(f"{path}: {error}; {REWRITE}") from None


def check_finite(features: torch.Tensor, names: list[str], what: str) -> None:
    """Refuse rows of ``features`` (``[N, ...]``, one name per row) that hold NaN or infinity."""
    bad = (~torch.isfinite(features.reshape(len(features), -1))).any(dim=1)
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(
            f"{what}: {len(rows)} of {len(features)} rows hold NaN or infinite features "
            f"(first: {names[rows[0]]!r})"
        )
