"""Baselines on the same cached features (docs/algorithm.md §9), one small class each."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from croft_pipeline.methods.base import (
    EvalSet,
    FitReport,
    LogFn,
    Method,
    TrainSet,
    accuracy,
    l2_normalize,
    no_log,
    register,
)
from croft_pipeline.methods.broadcast import cross_entropy
from croft_pipeline.methods.params import (
    ClipAdapterParams,
    LinearProbeParams,
    TipAdapterFParams,
)
from croft_pipeline.methods.trainer import TrainableMethod


@register
class ZeroShot(Method):
    """Zero-shot CLIP: ``s · n(f) n(t)ᵀ``; nothing is trained."""

    name = "zero_shot"
    starts_at_zero_shot = True

    def _logits(self, features: Tensor) -> Tensor:
        return self.logit_scale * l2_normalize(features) @ l2_normalize(self.text_features).T

    def fit(self, train: TrainSet, val: EvalSet, log: LogFn = no_log) -> FitReport:
        start = time.perf_counter()
        val_acc = accuracy(self.logits(val.features), val.labels)
        log(0, {"val_accuracy": val_acc})
        return FitReport(-1, val_acc, 0, [{"val_accuracy": val_acc}], time.perf_counter() - start)


class CrossEntropyMethod(TrainableMethod):
    """A trainable method whose loss is the cross-entropy of its logits."""

    def _train_step(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        logits = self._logits(x)
        loss = cross_entropy(logits, y)
        self._step_all(loss)
        return {"loss": loss}, logits


class LinearHead(nn.Module):
    def __init__(self, text_features: Tensor):
        super().__init__()
        self.weight = nn.Parameter(l2_normalize(text_features).clone())
        self.bias = nn.Parameter(torch.zeros(text_features.shape[0], device=text_features.device))


@register
class LinearProbe(CrossEntropyMethod):
    """``s · (n(f) Wᵀ + b)``, with W initialised to the zero-shot classifier ``n(t)`` and b = 0."""

    name = "linear_probe"
    params = LinearProbeParams
    starts_at_zero_shot = True

    def __init__(
        self, config: Mapping[str, Any], text_features: Tensor, logit_scale: float, seed: int
    ):
        super().__init__(config, text_features, logit_scale, seed)
        self.module = LinearHead(self.text_features)

    def _logits(self, features: Tensor) -> Tensor:
        head = self.module
        return self.logit_scale * (
            l2_normalize(features) @ head.weight.mT + head.bias.unsqueeze(-2)
        )


class BottleneckMLP(nn.Module):
    """CLIP-Adapter's ``Linear(D, D/red)–ReLU–Linear(D/red, D)–ReLU``, no biases, seeded init."""

    def __init__(self, dim: int, reduction: int, generator: torch.Generator):
        super().__init__()
        hidden = max(1, dim // reduction)
        self.down = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(hidden, dim, bias=False)
        for layer in (self.down, self.up):  # nn.Linear's default init, from a local generator
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)

    def forward(self, x: Tensor) -> Tensor:  # x Wᵀ by hand: the weights may be stacked [G, ...]
        return F.relu(F.relu(x @ self.down.weight.mT) @ self.up.weight.mT)


@register
class ClipAdapter(CrossEntropyMethod):
    """CLIP-Adapter: ``f' = ratio·MLP(f) + (1-ratio)·f``; logits ``s · n(f') n(t)ᵀ``."""

    name = "clip_adapter"
    params = ClipAdapterParams
    point_attributes = ("ratio",)  # `reduction` sets the hidden width: one shape per batch

    def __init__(
        self, config: Mapping[str, Any], text_features: Tensor, logit_scale: float, seed: int
    ):
        super().__init__(config, text_features, logit_scale, seed)
        generator = torch.Generator().manual_seed(self.seed)
        dim = self.text_features.shape[1]
        self.module = BottleneckMLP(dim, int(config["reduction"]), generator).to(self.device)
        self.ratio = float(config["ratio"])

    def _embed(self, features: Tensor) -> Tensor:
        return l2_normalize(self.ratio * self.module(features) + (1.0 - self.ratio) * features)

    def _logits(self, features: Tensor) -> Tensor:
        return self.logit_scale * self._embed(features) @ l2_normalize(self.text_features).T


class TipCache(nn.Module):
    """Tip-Adapter-F's trainable keys ``[N_train, D]`` and fixed one-hot values ``[N_train, K]``."""

    def __init__(self, keys: Tensor, values: Tensor):
        super().__init__()
        self.keys = nn.Parameter(keys.clone())
        self.register_buffer("values", values.clone())


@register
class TipAdapterF(CrossEntropyMethod):
    """Tip-Adapter-F: ``s·n(f) n(t)ᵀ + α·exp(−β(1 − n(f) Kᵀ)) V``.

    Keys start as the normalized mean over the cached augmented views of each training image
    (Tip-Adapter's cache), values are the one-hot labels; the keys are fine-tuned.
    """

    name = "tip_adapter_f"
    params = TipAdapterFParams
    point_attributes = ("alpha", "beta")

    def __init__(
        self, config: Mapping[str, Any], text_features: Tensor, logit_scale: float, seed: int
    ):
        super().__init__(config, text_features, logit_scale, seed)
        self.alpha, self.beta = float(config["alpha"]), float(config["beta"])
        self.module = None  # built from the training set (fit) or from a state dict

    def _prepare(self, train: TrainSet) -> None:
        keys = l2_normalize(train.features.to(self.device, torch.float32).mean(dim=1))
        values = F.one_hot(train.labels.to(self.device), self.num_classes).float()
        self.module = TipCache(keys, values)

    def _cache(self) -> TipCache:
        if self.module is None:
            raise RuntimeError("tip_adapter_f: call fit() or load_state_dict() first")
        return self.module

    def _logits(self, features: Tensor) -> Tensor:
        cache, f = self._cache(), l2_normalize(features)
        clip_logits = self.logit_scale * f @ l2_normalize(self.text_features).T
        affinity = f @ cache.keys.mT
        return clip_logits + self.alpha * torch.exp(-self.beta * (1.0 - affinity)) @ cache.values

    def _apply(self, fn, features: Tensor) -> Tensor:
        self._cache()
        return super()._apply(fn, features)

    def state_dict(self) -> dict[str, Tensor]:
        self._cache()
        return super().state_dict()

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        if set(state) != {"keys", "values"}:
            raise ValueError(
                f"tip_adapter_f: state keys {sorted(state)}, expected ['keys', 'values']"
            )
        self.module = TipCache(state["keys"].to(self.device), state["values"].to(self.device))
