"""Every method's hyper-parameters, declared once next to their defaults and their allowed
values (DomainBed-style), and the ``train`` parameter block that selects, configures and
tunes the methods. Torch-free: the start-of-run check imports it without the methods.

A method's configuration (``Method.config``, saved with its weights and served) is its model's
defaults, then its own block ``train.method_params.<name>`` (only what a run changes), then
``device`` from ``train.device`` (:func:`method_config`). Its search is ``train.grids.<name>``:
each value a value the field allows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from croft_pipeline.config.rules import (
    BOOLEAN,
    NON_NEGATIVE,
    NUMBER,
    POSITIVE,
    RUNNER,
    TEXT,
    THREAD_COUNT,
    UNIT,
    ZERO,
    ParameterError,
    at_least,
    one_of,
    parameter_error,
)

ENERGY_GRADS = ("closed_form", "autograd")  # methods/energy_grad.py ENERGY_GRAD_FORMS
ALPHA = UNIT  # a WiSE-FT mixing weight


class Params(BaseModel):
    """A parameter block: every key declared, no other key."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def checked(cls, values: Mapping[str, Any] | None, key: str) -> Self:
        """The block ``key`` (``None``: every default), or its first broken value as a
        :class:`ParameterError` naming the full key (``train.ray.max_retries``)."""
        values = {} if values is None else values
        try:
            return cls.model_validate(dict(values) if isinstance(values, Mapping) else values)
        except ValidationError as error:
            raise parameter_error(error, key) from None


class MethodParams(Params):
    """Every method: where it computes (``train.device``)."""

    device: Annotated[str, TEXT] = "auto"


class TrainedParams(MethodParams):
    """A method trained by SGD with the shared loop (docs/algorithm.md §8): constant warm-up
    LR, then cosine over ``epochs``; the epoch with the best ID validation accuracy is kept."""

    lr: Annotated[float, POSITIVE] = 0.002
    momentum: Annotated[float, NON_NEGATIVE] = 0.9
    weight_decay: Annotated[float, NON_NEGATIVE] = 0.1  # the official fork's Dassl default
    epochs: Annotated[int, at_least(1)] = 15
    warmup_epochs: Annotated[int, at_least(0)] = 1  # epochs at warmup_lr before the cosine
    warmup_lr: Annotated[float, NON_NEGATIVE] = 1.0e-5
    batch_size: Annotated[int, at_least(1)] = 32


class LinearProbeParams(TrainedParams):
    """``s · (n(f) Wᵀ + b)`` from the zero-shot classifier."""


class ClipAdapterParams(TrainedParams):
    """``f' = ratio · MLP(f) + (1 - ratio) · f``; the MLP's hidden width is ``D / reduction``."""

    weight_decay: Annotated[float, NON_NEGATIVE] = 5.0e-4  # Dassl's default (docs/benchmark.md)
    ratio: Annotated[float, UNIT] = 0.2
    reduction: Annotated[int, at_least(1)] = 4


class TipAdapterFParams(TrainedParams):
    """The few-shot cache's logits ``alpha · exp(-beta (1 - cos))`` added to zero-shot's."""

    alpha: Annotated[float, NUMBER] = 1.0
    beta: Annotated[float, NON_NEGATIVE] = 5.0


class CroftParams(TrainedParams):
    """CRoFT (docs/algorithm.md §2–§6): image and text adapters, the feature generator and the
    energy-gradient regulariser (EDR)."""

    ratio: Annotated[float, UNIT] = 0.2  # image adapter mix r
    ratio_text: Annotated[float, UNIT] = 0.5  # text adapter mix r_t
    lambda1: Annotated[float, NON_NEGATIVE] = 15.0  # disalignment weight
    lambda2: Annotated[float, NON_NEGATIVE] = 100.0  # EDR weight
    gen_step: Annotated[int, at_least(0)] = 1  # inner generator steps per batch
    # setup2: L2 = sum(grad(mean E)^2); setup1: mean(grad(sum E)^2)
    edr_setup: Annotated[str, one_of(("setup1", "setup2"))] = "setup2"
    edr_branch: Annotated[str, one_of(("auto", "A", "B"))] = "auto"  # auto: A when gen_step > 0
    edr_grad: Annotated[str, one_of(ENERGY_GRADS)] = "closed_form"  # or autograd (double backward)
    edr_delta: Annotated[float, NON_NEGATIVE] = 1.0e-4  # the official evaluation point W + delta


class CroftCleanParams(CroftParams):
    edr_delta: Annotated[float, NON_NEGATIVE] = 0.0  # the gradient at W itself


class CroftNoEdrParams(CroftParams):
    """The ablation: no energy-gradient term."""

    lambda2: Annotated[float, ZERO] = 0.0


METHOD_PARAMS: dict[str, type[MethodParams]] = {
    "zero_shot": MethodParams,
    "linear_probe": LinearProbeParams,
    "clip_adapter": ClipAdapterParams,
    "tip_adapter_f": TipAdapterFParams,
    "croft_faithful": CroftParams,
    "croft_clean": CroftCleanParams,
    "croft_no_edr": CroftNoEdrParams,
}  # every registered method (methods/base.py METHODS) has its model here


def trains(name: str) -> bool:
    """Fitted by SGD (and tuned with the same budget as the other trained methods)."""
    return issubclass(METHOD_PARAMS[name], TrainedParams)


def method_params(name: str, values: Mapping[str, Any], prefix: str) -> MethodParams:
    """``values`` (a method's own block) over the defaults of ``name``'s model; a broken value
    is a :class:`ParameterError` naming ``<prefix>.<key>``."""
    return METHOD_PARAMS[name].checked(values, prefix)


def method_config(train: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The plain configuration ``name`` is built with: its model's defaults, then
    ``train.method_params.<name>``, then ``train.device`` (the dict ``Method.config`` holds)."""
    if name not in METHOD_PARAMS:
        raise KeyError(f"train.methods names {name!r}; registered methods: {sorted(METHOD_PARAMS)}")
    own = (train.get("method_params") or {}).get(name) or {}
    values = {**own, "device": train["device"]}
    return method_params(name, values, f"train.method_params.{name}").model_dump()


METHOD_NAME = one_of(list(METHOD_PARAMS))


def method_grids(train: Mapping[str, Any], names: Sequence[str]) -> dict[str, dict[str, list]]:
    """Each method's search (``train.grids.<name>``; zero-shot has none). With
    ``equal_budget`` every trained method must try the same number of points (a fair
    comparison), or this is an error naming the counts."""
    grids = {
        name: {
            key: list(values)
            for key, values in ((train.get("grids") or {}).get(name) or {}).items()
        }
        for name in names
    }
    sizes = {
        name: math.prod(len(values) for values in grid.values())
        for name, grid in grids.items()
        if trains(name)
    }
    if train.get("equal_budget", True) and len(set(sizes.values())) > 1:
        raise ParameterError(
            "train.grids",
            "give every trained method the same number of points (train.equal_budget: true)",
            sizes,
        )
    return grids


class RayTasks(Params):
    """``train.runner: ray``: one Ray task per fit job."""

    max_retries: Annotated[int, at_least(0)] = 3  # a task whose worker died runs again
    cpus_per_task: Annotated[float, POSITIVE] = 1.0  # CPUs each fit task reserves


class WiseParams(Params):
    alphas: list[Annotated[float, ALPHA]] = []  # empty: no WiSE-FT point


class TrainParams(Params):
    """The ``train`` block: which methods, their settings and grids, and where they fit."""

    device: Annotated[str, TEXT] = "auto"  # checked against this machine by the project model
    num_threads: Annotated[int | str | None, THREAD_COUNT] = 1
    workers: Annotated[int | str | None, THREAD_COUNT] = "auto"
    runner: Annotated[str, RUNNER] = "local"
    ray: RayTasks = RayTasks()
    methods: Annotated[list[Annotated[str, METHOD_NAME]], Field(min_length=1)]
    method_params: dict[Annotated[str, METHOD_NAME], dict[str, Any]] = {}
    grids: dict[Annotated[str, METHOD_NAME], dict[str, Any]] = {}
    equal_budget: Annotated[bool, BOOLEAN] = True  # every trained method tries as many points
    wise: WiseParams = WiseParams()

    @field_validator("method_params")
    @classmethod
    def _method_blocks(cls, blocks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, values in blocks.items():
            method_params(name, values or {}, f"train.method_params.{name}")
        return blocks

    @field_validator("grids")
    @classmethod
    def _grids(cls, grids: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, grid in grids.items():
            fields = METHOD_PARAMS[name].model_fields
            for key, values in (grid or {}).items():
                where = f"train.grids.{name}.{key}"
                if key not in fields or key == "device":
                    raise ParameterError(
                        where, f"not be set: {name} takes {sorted(fields)}", values
                    )
                if not (isinstance(values, list) and values):
                    raise ParameterError(where, "be a non-empty list", values)
                for i, value in enumerate(values):
                    try:
                        METHOD_PARAMS[name].model_validate({key: value})
                    except ValidationError as error:
                        raise parameter_error(error, f"{where}[{i}]", skip=1) from None
        return grids

    @model_validator(mode="after")
    def _equal_budget(self) -> TrainParams:
        method_grids(self.model_dump(), self.methods)
        return self
