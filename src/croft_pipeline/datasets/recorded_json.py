"""A JSON file that its node writes itself, atomically, as the last step of a transaction.

``register_model`` writes ``model_registration.json`` only after the aliases moved and
restores them if the write fails, so the file always agrees with the registry; a second write
by the catalog would reopen that window. Saving here only checks that the file holds the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class RecordedJSONDataset(AbstractDataset[dict, dict]):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> dict:
        return json.loads(self._filepath.read_text(encoding="utf-8"))

    def save(self, data: dict) -> None:
        if not self._filepath.is_file() or self.load() != json.loads(json.dumps(data)):
            raise DatasetError(
                f"{self._filepath} does not hold what its node returned: the node must write "
                "it (common.files.atomic_write_json) before returning"
            )

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
