"""``train_summary``: what the train pipeline fitted, per method and seed (docs/architecture.md).

A :class:`TrainSummary` holds the logit scale, the ID classes and one :class:`MethodSummary` per
method: a fitted method (zero-shot included) has a :class:`SeedFit` per seed, a WiSE-FT point
``<method>+wise`` names its ``base`` and ``space`` and has a :class:`SeedWise` per seed. Seeds are
integers; ``train_summary.json`` keys them by their text, as JSON must, and :meth:`to_dict` /
:meth:`from_dict` are the one place that converts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class SeedFit:
    """The kept grid point of a method at one seed (fields in the file's order)."""

    config: dict[str, Any]  # the resolved configuration of the kept point
    best_epoch: int = -1  # -1: nothing trained (zero-shot)
    best_val_accuracy: float
    zero_shot_val_accuracy: float | None = None  # on the same split
    history: list[dict[str, float]] = field(default_factory=list)  # the kept point's epochs
    grid: list[dict[str, Any]] = field(default_factory=list)  # every point tried, with probes
    oracle: dict[str, Any] = field(default_factory=dict)  # the best held-out point (never kept)
    adapter: str = ""  # its key in adapter_weights (methods.partition_id)
    adapter_sha256: str = ""  # the digest of those weights (common.files.tensors_digest)

    def probe(self) -> dict[str, float]:
        """The probe numbers of the kept grid point (the row whose point the config holds)."""
        for row in self.grid:
            if all(self.config.get(k) == v for k, v in row.get("point", {}).items()):
                return row.get("probe", {})
        return {}


@dataclass(frozen=True, kw_only=True)
class SeedWise:
    """The WiSE-FT point of a method at one seed: α chosen on ID validation."""

    config: dict[str, Any]  # the base method's
    alpha: float
    best_val_accuracy: float | None = None
    val_accuracy_by_alpha: dict[str, float] = field(default_factory=dict)
    adapter_sha256: str = ""  # the digest of the base method's weights it is rebuilt from


@dataclass(frozen=True, kw_only=True)
class MethodSummary:
    """One method's seeds: fits, or WiSE-FT points of ``base`` (in ``space``)."""

    seeds: dict[int, SeedFit | SeedWise]
    mode: str | None = None  # CRoFT's faithful | clean
    grid: dict[str, list[Any]] | None = None  # a fitted method's train.grids entry
    base: str | None = None  # a WiSE-FT point: the method it interpolates
    space: str | None = None  # a WiSE-FT point: weight | output

    @property
    def is_wise(self) -> bool:
        return self.base is not None

    def to_dict(self) -> dict[str, Any]:
        head = {"base": self.base, "space": self.space} if self.is_wise else {"grid": self.grid}
        seeds = {str(seed): dataclasses.asdict(run) for seed, run in self.seeds.items()}
        return {"mode": self.mode, **head, "seeds": seeds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodSummary:
        run = SeedWise if data.get("base") is not None else SeedFit
        return cls(
            seeds={int(seed): run(**values) for seed, values in data["seeds"].items()},
            **{key: data.get(key) for key in ("mode", "grid", "base", "space")},
        )


@dataclass(frozen=True, kw_only=True)
class TrainSummary:
    logit_scale: float
    id_classes: list[str]
    methods: dict[str, MethodSummary]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``train_summary.json``)."""
        methods = {name: entry.to_dict() for name, entry in self.methods.items()}
        return {"logit_scale": self.logit_scale, "id_classes": self.id_classes, "methods": methods}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSummary:
        return cls(
            logit_scale=data["logit_scale"],
            id_classes=list(data["id_classes"]),
            methods={name: MethodSummary.from_dict(e) for name, e in data["methods"].items()},
        )
