"""The ``evaluate.register`` and ``evaluate.gates`` parameter blocks: what is registered and
served, and the quality gates that move the ``champion`` alias (:mod:`.gates`). Torch-free."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Annotated, Any

from pydantic import Field

from croft_pipeline.config.rules import BOOLEAN, NUMBER, TEXT, at_least, optional
from croft_pipeline.methods.params import Params


class RegisterParams(Params):
    enabled: Annotated[bool, BOOLEAN] = True
    # the MLflow registered model; null: named after the dataset (registered_model_name)
    model_name: Annotated[str | None, optional(TEXT)] = None
    method: Annotated[str, TEXT]  # served and registered: one of the evaluated methods
    seed: Annotated[int | None, optional(at_least(0))] = None  # null: best ID validation accuracy
    # an experiment (dvc exp run) or a run with --params registers too (publishing.experiments)
    experiments: Annotated[bool, BOOLEAN] = False
    candidate_alias: Annotated[str, TEXT] = "candidate"  # every registering run's version
    champion_alias: Annotated[str, TEXT] = "champion"  # moved only when every gate passes
    device: Annotated[str, TEXT] = "auto"  # where the served model computes
    # the MLflow model config (serving.inputs checks it); "model_config" is pydantic's own name
    served_config: dict[str, Any] = Field({}, alias="model_config")
    registration_file: Annotated[str, TEXT]


class Gate(Params):
    """One comparison gate: the registered method's ``shift``/``metric`` against a ``value``,
    or against a ``baseline`` (with ``interval``: the 95% interval of the paired difference)."""

    name: Annotated[str | None, optional(TEXT)] = None
    shift: Annotated[str, TEXT]
    metric: Annotated[str, TEXT]
    op: Annotated[str, TEXT] = ">"
    value: Annotated[float | None, optional(NUMBER)] = None
    baseline: Annotated[str | None, optional(TEXT)] = None
    interval: Annotated[bool, BOOLEAN] = False


class GatesParams(Params):
    require_finite: Annotated[bool, BOOLEAN] = True  # every summary metric of the method finite
    comparisons: list[Gate] = []


DEFAULT_MODEL_NAME = "croft-clip"  # EmojiShift's registered model (the embedded default data)


def registered_model_name(register: Mapping[str, Any], ingest: Mapping[str, Any]) -> str:
    """The registered model of a run: ``register.model_name`` when set; else one per dataset, so
    that two environments of one project never move each other's aliases: ``croft-clip`` for
    EmojiShift, ``croft-clip-<folder>`` for a folder dataset (``ingest.roots.main``'s last part,
    lower case, other characters as ``-``: ``data/01_raw/PACS`` is ``croft-clip-pacs``)."""
    if register.get("model_name"):
        return register["model_name"]
    if ingest.get("source", "emojishift") == "emojishift":
        return DEFAULT_MODEL_NAME
    folder = PurePath(str(ingest["roots"]["main"])).name
    slug = re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-") or "folder"
    return f"{DEFAULT_MODEL_NAME}-{slug}"


def with_model_name(register: Mapping[str, Any], ingest: Mapping[str, Any]) -> dict[str, Any]:
    """``register`` with its ``model_name`` resolved (:func:`registered_model_name`)."""
    return {**register, "model_name": registered_model_name(register, ingest)}
