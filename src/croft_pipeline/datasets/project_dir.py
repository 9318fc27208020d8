"""A read-only Kedro dataset whose value is the project directory (Kedro makes ``path`` absolute).

Parameters hold root paths relative to the project; nodes resolve them against this value, so a
run works from any working directory (``kedro run`` in a subfolder, a test's KedroSession).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class ProjectDirDataset(AbstractDataset[None, str]):
    def __init__(self, path: str = ".", metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> str:
        return str(self._path.resolve())

    def save(self, data: None) -> None:
        raise DatasetError("the project directory is read-only")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
