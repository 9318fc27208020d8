"""Kedro dataset for a flat ``dict[str, Tensor]`` saved as safetensors (no pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from kedro.io import AbstractDataset
from safetensors.torch import load_file

from croft_pipeline.common.files import save_safetensors


class SafetensorsDictDataset(AbstractDataset[dict[str, torch.Tensor], dict[str, torch.Tensor]]):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> dict[str, torch.Tensor]:
        return load_file(str(self._filepath))

    def save(self, data: dict[str, torch.Tensor]) -> None:
        tensors = {key: value.detach().contiguous().cpu() for key, value in data.items()}
        save_safetensors(self._filepath, tensors)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
