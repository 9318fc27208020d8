"""Kedro dataset for :class:`croft_pipeline.common.features.FeatureTable` files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from croft_pipeline.common.features import FeatureTable


class FeatureTableDataset(AbstractDataset[FeatureTable, FeatureTable]):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> FeatureTable:
        return FeatureTable.load(self._filepath)

    def save(self, data: FeatureTable) -> None:
        data.save(self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
