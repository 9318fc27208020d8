"""The ``provenance`` dataset: the run's :class:`~croft_pipeline.tracking.provenance.Provenance`, as its
files are when a node loads it (``hooks.ProvenanceHook`` adds it to every run's catalog)."""

from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset, DatasetError

from croft_pipeline.tracking.provenance import Provenance, ProvenanceRecorder


class ProvenanceDataset(AbstractDataset[None, Provenance]):
    def __init__(self, recorder: ProvenanceRecorder) -> None:
        self._recorder = recorder

    def load(self) -> Provenance:
        return self._recorder.current()

    def save(self, data: None) -> None:
        raise DatasetError("provenance is read-only: it is computed from the run")

    def _describe(self) -> dict[str, Any]:
        return {"env": self._recorder.env, "pipeline": self._recorder.pipeline}
