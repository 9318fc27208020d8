"""Kedro dataset for :class:`croft_pipeline.methods.train_summary.TrainSummary` JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from croft_pipeline.common.files import atomic_write_json
from croft_pipeline.methods.train_summary import TrainSummary


class TrainSummaryDataset(AbstractDataset[TrainSummary, TrainSummary]):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> TrainSummary:
        return TrainSummary.from_dict(json.loads(self._filepath.read_text(encoding="utf-8")))

    def save(self, data: TrainSummary) -> None:
        atomic_write_json(self._filepath, data.to_dict())

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
