"""Which runs register a version and move the aliases. A run of the committed configuration
(``kedro run``, ``make run``, ``dvc repro``) does. An experiment does not: a ``dvc exp run`` (DVC
sets ``DVC_EXP_NAME`` for its stage commands) or a run with ``--params`` overrides (Kedro's
runtime parameters) registers nothing and moves neither ``candidate`` nor ``champion``, unless
``evaluate.register.experiments`` is true. Its gates are still checked and reported.
Kedro-free and MLflow-free (``tracking.provenance`` knows what made the run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from croft_pipeline.tracking.provenance import Provenance

ASK = "evaluate.register.experiments=true registers it"


def held_reason(register: Mapping[str, Any], provenance: Provenance | None) -> str:
    """Why this run registers no version and moves no alias; ``""`` when it registers (a run of
    the committed configuration, or an experiment with ``register.experiments``)."""
    experiment = provenance.experiment() if provenance is not None else None
    if experiment is None or register.get("experiments", False):
        return ""
    return f"{experiment} registers no version ({ASK})"


def aliases_stay(held: Mapping[str, Any]) -> str:
    """``croft-clip: @candidate stays at version 3, @champion stays unset`` for the record of a
    run that registered nothing (``publishing.publish.held_registration``)."""
    stays = [
        f"@{alias} stays {'at version ' + version if version else 'unset'}"
        for alias, version in held["alias_versions"].items()
    ]
    return f"{held['model_name']}: {', '.join(stays)}"
