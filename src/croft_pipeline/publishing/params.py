"""The ``evaluate.register`` and ``evaluate.gates`` parameter blocks: what is registered and
served, and the quality gates that move the ``champion`` alias (:mod:`.gates`). Torch-free."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from croft_pipeline.config.rules import BOOLEAN, NUMBER, TEXT, at_least, optional
from croft_pipeline.methods.params import Params


class RegisterParams(Params):
    enabled: Annotated[bool, BOOLEAN] = True
    model_name: Annotated[str, TEXT]  # the MLflow registered model
    method: Annotated[str, TEXT]  # served and registered: one of the evaluated methods
    seed: Annotated[int | None, optional(at_least(0))] = None  # null: best ID validation accuracy
    candidate_alias: Annotated[str, TEXT] = "candidate"  # every run's registered version
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
