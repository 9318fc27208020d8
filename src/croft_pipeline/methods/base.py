"""The method contract (fit on cached features, return logits), its registry and its data.

Every method is built from ``(config, text_features, logit_scale, seed)`` and carries its trained
state in ``state_dict()`` (flat ``dict[str, Tensor]``, safetensors-ready), so serving rebuilds it
with :func:`build_method` plus :meth:`Method.load_state_dict`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor, nn

from croft_pipeline.common.compute import resolve_device
from croft_pipeline.config.rules import ParameterError, parameter_error
from croft_pipeline.methods.params import METHOD_PARAMS, MethodParams

LogFn = Callable[[int, dict[str, float]], None]
EVAL_CHUNK = 4096  # rows per forward pass when scoring large sets


def no_log(step: int, values: dict[str, float]) -> None:
    """A :data:`LogFn` that drops everything."""


@dataclass(frozen=True)
class TrainSet:
    """Raw training image features ``[N, A, D]`` (A augmented views) and labels ``[N]``."""

    features: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.features.ndim != 3:
            raise ValueError(
                f"TrainSet.features must be [N, A, D], got {tuple(self.features.shape)}"
            )
        _check_labels(self.labels, self.features.shape[0], "TrainSet")


@dataclass(frozen=True)
class EvalSet:
    """Raw center-view image features ``[M, D]`` and labels ``[M]``."""

    features: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.features.ndim != 2:
            raise ValueError(f"EvalSet.features must be [M, D], got {tuple(self.features.shape)}")
        _check_labels(self.labels, self.features.shape[0], "EvalSet")


def _check_labels(labels: Tensor, rows: int, owner: str) -> None:
    if labels.ndim != 1 or labels.shape[0] != rows:
        raise ValueError(f"{owner}.labels must be [{rows}], got {tuple(labels.shape)}")
    if rows and int(labels.min()) < 0:
        raise ValueError(
            f"{owner}.labels must be ID class indices >= 0 (found {int(labels.min())})"
        )


@dataclass
class FitReport:
    """What a fit did: the epoch kept (chosen on ID validation accuracy) and the per-epoch log."""

    best_epoch: int  # -1 for a method without training
    best_val_accuracy: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class NonFiniteLossError(FloatingPointError):
    """A loss term (or a parameter) became NaN/inf; training of that fit stopped.

    ``outcome`` says what happens next: within a grid search the point is skipped; when every
    point diverged, the search raises this error and nothing is kept or written.
    """

    def __init__(
        self,
        method: str,
        epoch: int,
        step: int,
        term: str,
        value: float,
        outcome: str = "training stopped",
    ):
        self.method, self.epoch, self.step, self.term, self.value = method, epoch, step, term, value
        super().__init__(
            f"{method}: non-finite {term!r} = {value} at epoch {epoch}, step {step}; {outcome}"
        )


def l2_normalize(x: Tensor) -> Tensor:
    """Exact row-wise L2 normalization (zero-shot CLIP's ``x / x.norm()``)."""
    return F.normalize(x, dim=-1)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean()) if len(labels) else float("nan")


class Method(ABC):
    """One method on cached CLIP features. Subclasses set ``name`` and ``params`` (the model of
    their configuration, :mod:`croft_pipeline.methods.params`)."""

    name: ClassVar[str]
    params: ClassVar[type[MethodParams]] = MethodParams
    # True when the untrained method computes zero-shot CLIP (WiSE-FT then interpolates weights)
    starts_at_zero_shot: ClassVar[bool] = False
    trains: ClassVar[bool] = False  # fitted by SGD (tuned with the trained methods' budget)

    @classmethod
    def config_keys(cls) -> frozenset[str]:
        return frozenset(cls.params.model_fields)

    def __init__(
        self, config: Mapping[str, Any], text_features: Tensor, logit_scale: float, seed: int
    ):
        check_config(self.name, config, self.config_keys())
        try:
            self.params.model_validate(dict(config))
        except ValidationError as error:
            broken = parameter_error(error)
            raise ParameterError(f"{self.name}: {broken.key}", broken.rule, broken.value) from None
        if text_features.ndim != 2:
            raise ValueError(
                f"{self.name}: text_features must be [K, D], got {tuple(text_features.shape)}"
            )
        self.config = dict(config)
        self.seed = int(seed)
        self.device = resolve_device(str(config["device"]))
        self.text_features = text_features.detach().to(self.device, torch.float32)
        self.logit_scale = float(logit_scale)
        self.module: nn.Module = nn.Module()

    @property
    def num_classes(self) -> int:
        return int(self.text_features.shape[0])

    @abstractmethod
    def fit(self, train: TrainSet, val: EvalSet, log: LogFn = no_log) -> FitReport:
        """Train on ``train``; keep the epoch with the best accuracy on ``val``."""

    @abstractmethod
    def _logits(self, features: Tensor) -> Tensor:
        """``[N, D]`` raw features on the method's device -> ``[N, K]`` logits."""

    def _embed(self, features: Tensor) -> Tensor:
        """The adapted, L2-normalized image feature; identity adapter by default."""
        return l2_normalize(features)

    def logits(self, features: Tensor) -> Tensor:
        """``[N, D]`` raw center features -> ``[N, K]`` float32 logits on the CPU."""
        return self._apply(self._logits, features)

    def embed(self, features: Tensor) -> Tensor:
        """``[N, D]`` raw features -> adapted, L2-normalized features (for KNN scores)."""
        return self._apply(self._embed, features)

    def _text_side(self, text_features: Tensor) -> Tensor:
        """``[M, D]`` raw text features of further class names -> their class embeddings, as the
        method treats its own class names; ``logit_scale · embed(f) · text_side(t)ᵀ`` are their
        logits. Default: L2-normalized (zero-shot CLIP's; a head's untrained row, bias 0)."""
        return l2_normalize(text_features)

    def negative_logits(self, features: Tensor, text_features: Tensor) -> Tensor:
        """``[N, D]`` raw center features -> ``[N, M]`` logits of ``M`` class names the method
        has no training data for (NegLabel's negative labels), through its own text side."""
        with torch.no_grad():
            side = self._text_side(text_features.to(self.device, torch.float32))
        return self._apply(lambda f: self.logit_scale * self._embed(f) @ side.T, features)

    def _apply(self, fn: Callable[[Tensor], Tensor], features: Tensor) -> Tensor:
        self.module.eval()
        chunks = features.split(EVAL_CHUNK) if len(features) else [features]
        with torch.no_grad():
            return torch.cat([fn(c.to(self.device, torch.float32)).float().cpu() for c in chunks])

    def state_dict(self) -> dict[str, Tensor]:
        return {
            k: v.detach().cpu().clone().contiguous() for k, v in self.module.state_dict().items()
        }

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.module.load_state_dict({k: v.to(self.device) for k, v in state.items()}, strict=True)


def check_config(method: str, config: Mapping[str, Any], keys: frozenset[str]) -> None:
    """Every key of ``keys`` present, no other key: a typo must not pass silently."""
    missing, unknown = sorted(keys - set(config)), sorted(set(config) - keys)
    if missing or unknown:
        raise ValueError(
            f"configuration of method {method!r}: missing keys {missing}, unknown keys {unknown} "
            f"(expected exactly {sorted(keys)}; see croft_pipeline.methods.params)"
        )


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to :data:`METHODS` under its ``name``."""
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    if METHOD_PARAMS.get(cls.name) is not cls.params:
        raise ValueError(f"method {cls.name!r}: its params must be METHOD_PARAMS[{cls.name!r}]")
    METHODS[cls.name] = cls
    return cls


def partition_id(method: str, seed: int) -> str:
    """Where a fitted method's weights live: ``<adapter_dir>/<method>/seed_<seed>.safetensors``."""
    return f"{method}/seed_{seed}"
