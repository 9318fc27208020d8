"""A Kedro dataset for raw bytes (PNG plots), written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from croft_pipeline.common.files import atomic_write_bytes


class BytesDataset(AbstractDataset[bytes, bytes]):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> bytes:
        return self._filepath.read_bytes()

    def save(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray):
            raise TypeError(
                f"{self._filepath}: BytesDataset saves bytes, got {type(data).__name__}"
            )
        atomic_write_bytes(self._filepath, bytes(data))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
