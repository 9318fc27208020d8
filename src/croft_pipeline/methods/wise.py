"""WiSE-FT (Wortsman et al., CVPR 2022; docs/algorithm.md §12): zero-shot to fine-tuned.

A method that *starts at* zero-shot (its untrained state computes the zero-shot classifier:
CRoFT's identity adapters, the linear probe's zero-shot head) is interpolated in weight space,
``θ(α) = (1 − α)·θ_zero-shot + α·θ_fine-tuned``. Any other method (CLIP-Adapter's random MLP,
Tip-Adapter-F's cache) is interpolated in output space, as WiSE-FT does for ensembles:
``logits(α) = (1 − α)·logits_zero-shot + α·logits_fine-tuned`` and the embedding the normalized
mix of the two embeddings. At α = 0 the result *is* the zero-shot model and at α = 1 the
fine-tuned one (exactly, not up to rounding); α is chosen on ID validation accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from croft_pipeline.methods.base import Method, accuracy, l2_normalize
from croft_pipeline.methods.params import ALPHA
from croft_pipeline.methods.registry import build_method

WEIGHT, OUTPUT = "weight", "output"
SUFFIX = "+wise"


def wise_name(method: str) -> str:
    """The reported name of a method's interpolation, e.g. ``croft_clean+wise``."""
    return f"{method}{SUFFIX}"


def is_wise(name: str) -> bool:
    return name.endswith(SUFFIX)


def wise_base(name: str) -> str:
    """``croft_clean`` for ``croft_clean+wise``; any other name unchanged."""
    return name.removesuffix(SUFFIX)


def space_of(method: Method) -> str:
    """``weight`` when the method's untrained state is the zero-shot solution, else ``output``."""
    return WEIGHT if method.starts_at_zero_shot else OUTPUT


@dataclass
class Blend:
    """The output-space interpolation of a fine-tuned method with zero-shot CLIP."""

    fine_tuned: Method
    zero_shot: Method
    alpha: float

    def logits(self, features: Tensor) -> Tensor:
        a = self.alpha
        return (1.0 - a) * self.zero_shot.logits(features) + a * self.fine_tuned.logits(features)

    def embed(self, features: Tensor) -> Tensor:
        a = self.alpha
        mix = (1.0 - a) * self.zero_shot.embed(features) + a * self.fine_tuned.embed(features)
        return l2_normalize(mix)

    def negative_logits(self, features: Tensor, text_features: Tensor) -> Tensor:
        a, models = self.alpha, (self.zero_shot, self.fine_tuned)
        zero_shot, fine_tuned = (m.negative_logits(features, text_features) for m in models)
        return (1.0 - a) * zero_shot + a * fine_tuned


def interpolated_state(method: Method, alpha: float) -> dict[str, Tensor]:
    """``(1 − α)·θ_0 + α·θ`` for a method that starts at zero-shot (θ_0: its untrained state)."""
    if not method.starts_at_zero_shot:
        raise ValueError(f"{method.name} does not start at zero-shot: interpolate its outputs")
    start = fresh_copy(method).state_dict()
    return {
        key: torch.lerp(start[key].float(), value.float(), alpha).to(value.dtype)
        for key, value in method.state_dict().items()
    }


def fresh_copy(method: Method) -> Method:
    """An untrained method of the same name and configuration."""
    return build_method(
        method.name, method.config, method.text_features.cpu(), method.logit_scale, method.seed
    )


def interpolate(method: Method, zero_shot: Method, alpha: float):
    """The model at ``alpha`` (an object with ``logits`` and ``embed``; see the module doc)."""
    ALPHA.check("WiSE alpha", alpha)
    if alpha == 0.0:
        return zero_shot
    if alpha == 1.0:
        return method
    if space_of(method) == OUTPUT:
        return Blend(method, zero_shot, alpha)
    blended = fresh_copy(method)
    blended.load_state_dict(interpolated_state(method, alpha))
    return blended


def choose_alpha(
    method: Method, zero_shot: Method, features: Tensor, labels: Tensor, alphas: Sequence[float]
) -> tuple[float, dict[str, float]]:
    """The α with the best accuracy on (ID validation) ``features``; the smallest on ties."""
    scores = {
        f"{alpha:g}": accuracy(interpolate(method, zero_shot, alpha).logits(features), labels)
        for alpha in sorted(alphas)
    }
    best = max(sorted(alphas), key=lambda alpha: scores[f"{alpha:g}"])
    return float(best), scores


def curve(
    method: Method,
    zero_shot: Method,
    alphas: Sequence[float],
    sets: Mapping[str, tuple[Tensor, Tensor]],
) -> list[dict[str, float | str]]:
    """Accuracy on each named ``(features, labels)`` set at every α (the WiSE-FT curve)."""
    rows = []
    for alpha in sorted(alphas):
        model = interpolate(method, zero_shot, alpha)
        for split, (features, labels) in sets.items():
            if len(labels):
                rows.append(
                    {
                        "alpha": float(alpha),
                        "split": split,
                        "accuracy": accuracy(model.logits(features), labels),
                    }
                )
    return rows
