"""The EDR regulariser: squared norm of the gradient of an energy w.r.t. the adapter matrices.

For rows ``x`` (image side, pre-adapter, ``[M, D]``) and ``t`` (text side, ``[K, D]``) the adapter
maps ``a = r·x W' + (1-r)·x`` with ``W' = W`` or ``Wᵀ``, ``â = a / (‖a‖ + 1e-6)`` (same for ``t``),
and ``cos = â b̂ᵀ``. The energy ``E(cos)`` is either the official ``Σ exp(cos)`` or the clean
``Σ_n (1/s)·logsumexp_k(s·cos_nk)``, optionally averaged. ``g = ∂E/∂W`` (partial: the rows are
held fixed), squared and reduced.

Two exact forms:

* :func:`energy_grad_sq_autograd` — ``autograd.grad(..., create_graph=True)`` (a second-order
  graph), as the official code does;
* :func:`energy_grad_sq_closed` — ``∂E/∂W_img = r·xᵀ G_a`` with ``G_a`` the gradient w.r.t. ``a``
  derived by hand through the normalization
  (``G_a = Ĝ/c − a (a·Ĝ)/(‖a‖ c²)``, ``c = ‖a‖ + 1e-6``, ``Ĝ = (∂E/∂cos) b̂``); the squared Frobenius
  norms then come from Gram matrices, ``‖xᵀ G_a‖² = Σ (x xᵀ) ⊙ (G_a G_aᵀ)``, so no ``D×D`` matrix
  is formed and the whole term is one first-order graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from croft_pipeline.methods.broadcast import matrix_numel, matrix_sum

EPS = 1e-6  # the official code's normalization: v / (‖v‖ + 1e-6)


@dataclass(frozen=True)
class EnergyGradSpec:
    """Which energy, which reductions, and how the adapter is applied."""

    energy: Literal["expcos", "lse"]  # Σ exp(cos) (official) | (1/s)·logsumexp(s·cos) per row
    inner: Literal["sum", "mean"]  # reduction of the energy before differentiating
    outer: Literal["sum", "mean"]  # reduction of the squared gradient entries
    shared: bool  # one δ on both matrices (official): ‖g_img + g_txt‖²; else ‖g_img‖² + ‖g_txt‖²
    transpose: bool  # adapter as x @ Wᵀ (the forward's) or x @ W (the official EDR's)
    ratio: float | Tensor  # [G, 1, 1] on a stack of grid points (methods/broadcast.py)
    ratio_text: float | Tensor
    logit_scale: float = 1.0


def _pre_norm(x: Tensor, w: Tensor, ratio: float, transpose: bool) -> Tensor:
    return ratio * (x @ (w.mT if transpose else w)) + (1.0 - ratio) * x


def _normalize(a: Tensor) -> tuple[Tensor, Tensor]:
    """``(â, c)`` with ``c = ‖a‖ + EPS`` per row."""
    c = a.norm(dim=-1, keepdim=True) + EPS
    return a / c, c


def energy_value(cos: Tensor, spec: EnergyGradSpec) -> Tensor:
    """The scalar energy of a ``[M, K]`` cosine matrix (per point of a stack)."""
    if spec.energy == "expcos":
        total = matrix_sum(torch.exp(cos))
        return total / matrix_numel(cos) if spec.inner == "mean" else total
    s = spec.logit_scale
    total = matrix_sum(torch.logsumexp(s * cos, dim=-1, keepdim=True) / s)
    return total / cos.shape[-2] if spec.inner == "mean" else total


def energy_dcos(cos: Tensor, spec: EnergyGradSpec) -> Tensor:
    """``∂ energy_value / ∂ cos``, by hand."""
    if spec.energy == "expcos":
        weights = torch.exp(cos)
        return weights / matrix_numel(cos) if spec.inner == "mean" else weights
    weights = torch.softmax(spec.logit_scale * cos, dim=-1)
    return weights / cos.shape[-2] if spec.inner == "mean" else weights


def _normalize_backward(a: Tensor, c: Tensor, grad_hat: Tensor) -> Tensor:
    """Gradient w.r.t. ``a`` of a function of ``â = a / (‖a‖ + EPS)``, given its gradient at ``â``."""
    norm = (c - EPS).clamp_min(1e-12)
    radial = (a * grad_hat).sum(dim=-1, keepdim=True) / (norm * c * c)
    return grad_hat / c - a * radial


def _reduce_outer(sq: Tensor, numel: int, spec: EnergyGradSpec) -> Tensor:
    return sq / numel if spec.outer == "mean" else sq


def energy_grad_sq_closed(
    x: Tensor, t: Tensor, w_img: Tensor, w_txt: Tensor, spec: EnergyGradSpec
) -> Tensor:
    """The EDR term in closed form (first-order graph; differentiable in all four inputs)."""
    a = _pre_norm(x, w_img, spec.ratio, spec.transpose)
    b = _pre_norm(t, w_txt, spec.ratio_text, spec.transpose)
    a_hat, c_a = _normalize(a)
    b_hat, c_b = _normalize(b)
    dcos = energy_dcos(a_hat @ b_hat.mT, spec)
    g_a = _normalize_backward(a, c_a, dcos @ b_hat)
    g_b = _normalize_backward(b, c_b, dcos.mT @ a_hat)
    r, rt = spec.ratio, spec.ratio_text
    # ‖r xᵀ G_a‖² = r² Σ (x xᵀ) ⊙ (G_a G_aᵀ); the transpose of W only transposes g.
    sq = r * r * matrix_sum((x @ x.mT) * (g_a @ g_a.mT)) + rt * rt * matrix_sum(
        (t @ t.mT) * (g_b @ g_b.mT)
    )
    if spec.shared:
        sq = sq + 2.0 * r * rt * matrix_sum((x @ t.mT) * (g_a @ g_b.mT))
    numel = matrix_numel(w_img) if spec.shared else matrix_numel(w_img) + matrix_numel(w_txt)
    return _reduce_outer(sq, numel, spec)


def energy_grad_sq_autograd(
    x: Tensor, t: Tensor, w_img: Tensor, w_txt: Tensor, spec: EnergyGradSpec
) -> Tensor:
    """The EDR term by double backpropagation (``autograd.grad(create_graph=True)``)."""
    delta_img = torch.zeros_like(w_img, requires_grad=True)
    delta_txt = delta_img if spec.shared else torch.zeros_like(w_txt, requires_grad=True)
    a_hat, _ = _normalize(_pre_norm(x, w_img + delta_img, spec.ratio, spec.transpose))
    b_hat, _ = _normalize(_pre_norm(t, w_txt + delta_txt, spec.ratio_text, spec.transpose))
    energy = energy_value(a_hat @ b_hat.mT, spec)
    deltas = [delta_img] if spec.shared else [delta_img, delta_txt]
    # the points of a stack are independent: the gradient of their sum is each point's own
    grads = torch.autograd.grad(energy.sum(), deltas, create_graph=True)
    sq = sum(matrix_sum(g * g) for g in grads)
    numel = sum(matrix_numel(g) for g in grads)
    return _reduce_outer(sq, numel, spec)


ENERGY_GRAD_FORMS = {"closed_form": energy_grad_sq_closed, "autograd": energy_grad_sq_autograd}
