"""Kedro dataset for a flat ``dict[str, Tensor]`` saved as sealed safetensors (no pickle): its
digest is checked on every load (``croft_pipeline.common.files``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from kedro.io import AbstractDataset

from croft_pipeline.common.features import REWRITE
from croft_pipeline.common.files import load_safetensors, save_safetensors


class SafetensorsDictDataset(AbstractDataset[dict[str, torch.Tensor], dict[str, torch.Tensor]]):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> dict[str, torch.Tensor]:
        return load_safetensors(self._filepath, REWRITE)[0]

    def save(self, data: dict[str, torch.Tensor]) -> None:
        save_safetensors(self._filepath, data)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
