"""CRoFT on cached features (docs/algorithm.md §2–§6), in two modes.

* ``faithful``: the official code's computation, quirks included (§2.1–§2.4): the EDR applies
  the adapter as ``x @ W`` and mixes ``r·zc + (1-r)·zc W`` without renormalizing; both
  optimizers step on every backward; the inner generator steps reuse the stale forward graph
  (``retain_graph``); one δ shared by both adapter matrices (``‖g_img + g_txt‖²``); the energy is
  ``Σ exp(cos)``; setup-I / setup-II reductions; branch A / B.
* ``clean``: the forward's adapter (``n(r·x Wᵀ + (1-r)·x)``) everywhere; generator steps update
  only the generator (on a frozen adapter) and the main step only the adapter (fresh forward);
  ``‖g_I‖² + ‖g_c‖²`` with separate gradients per matrix; energy ``(1/s)·logsumexp(s·cos)``
  (the test-time energy divided by ``s``, so ``λ2`` does not depend on the logit scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from croft_pipeline.methods.base import register
from croft_pipeline.methods.broadcast import backward, cross_entropy, matrix_mean
from croft_pipeline.methods.energy_grad import ENERGY_GRAD_FORMS, EPS, EnergyGradSpec
from croft_pipeline.methods.params import CroftCleanParams, CroftNoEdrParams, CroftParams
from croft_pipeline.methods.trainer import TrainableMethod


def normalize(v: Tensor) -> Tensor:
    """``v / (‖v‖ + 1e-6)`` row-wise, as in the official code."""
    return v / (v.norm(dim=-1, keepdim=True) + EPS)


def adapt(x: Tensor, w: Tensor, ratio: float) -> Tensor:
    """The forward's residual adapter ``n(r·x Wᵀ + (1-r)·x)``."""
    return normalize(ratio * (x @ w.mT) + (1.0 - ratio) * x)


def generate(z: Tensor, g: Tensor, transpose: bool) -> Tensor:
    """Worst-case covariate-shift features ``n(z G + z)`` (``z Gᵀ`` when ``transpose``)."""
    return normalize(z @ (g.mT if transpose else g) + z)


def same_class(labels: Tensor) -> Tensor:
    return (labels[:, None] == labels[None, :]).float()


def disalignment(a: Tensor, b: Tensor, same: Tensor) -> Tensor:
    """``(1/N²) Σ_ij 1[y_i = y_j] ⟨a_i, b_j⟩``."""
    return matrix_mean(same * (a @ b.mT))


def stack_rows(a: Tensor, b: Tensor) -> Tensor:
    """The rows of ``a`` then those of ``b`` (a point's shared rows repeated over a stack)."""
    return torch.cat([a.expand(*b.shape[:-2], *a.shape[-2:]), b], dim=-2)


@dataclass
class CroftForward:
    logits: Tensor  # s · z uᵀ
    z: Tensor  # adapted normalized image features
    u: Tensor  # adapted normalized text features
    z0: Tensor  # zero-shot normalized image features
    u0: Tensor  # zero-shot normalized text features


def croft_forward(
    f: Tensor, t: Tensor, w_img: Tensor, w_txt: Tensor, ratio: float, ratio_text: float, s: float
) -> CroftForward:
    """docs/algorithm.md §2.3 on raw image features ``f`` and raw text features ``t``."""
    z, u = adapt(f, w_img, ratio), adapt(t, w_txt, ratio_text)
    logits = s * z @ u.mT
    return CroftForward(logits, z, u, normalize(f), normalize(t))


class CroftModule(nn.Module):
    """Image and text adapters and the feature generator, all ``D×D`` and identity-initialised."""

    def __init__(self, dim: int):
        super().__init__()
        self.adapter_image = nn.Parameter(torch.eye(dim))
        self.adapter_text = nn.Parameter(torch.eye(dim))
        self.generator = nn.Parameter(torch.eye(dim))


class Croft(TrainableMethod):
    """Shared by both modes; a registered subclass fixes ``mode``."""

    mode: ClassVar[str]
    params = CroftParams
    starts_at_zero_shot = True  # identity adapters (the generator is not used at test time)
    point_attributes = ("ratio", "ratio_text", "lambda1", "lambda2", "edr_delta")

    def __init__(
        self, config: dict[str, Any], text_features: Tensor, logit_scale: float, seed: int
    ):
        super().__init__(config, text_features, logit_scale, seed)
        self.module = CroftModule(self.text_features.shape[1]).to(self.device)
        self.ratio, self.ratio_text = float(config["ratio"]), float(config["ratio_text"])
        self.lambda1, self.lambda2 = float(config["lambda1"]), float(config["lambda2"])
        self.uses_edr = self.lambda2 != 0.0
        self.edr_delta = float(config["edr_delta"])
        self.gen_step = int(config["gen_step"])
        branch = config["edr_branch"]
        self.branch_a = self.gen_step > 0 if branch == "auto" else branch == "A"
        self.energy_grad = ENERGY_GRAD_FORMS[config["edr_grad"]]

    @property
    def edr_spec(self) -> EnergyGradSpec:
        setup1, faithful = self.config["edr_setup"] == "setup1", self.mode == "faithful"
        return EnergyGradSpec(
            energy="expcos" if faithful else "lse",
            inner="sum" if setup1 else "mean",
            outer="mean" if setup1 else "sum",
            shared=faithful,
            transpose=not faithful,
            ratio=self.ratio,
            ratio_text=self.ratio_text,
            logit_scale=self.logit_scale,
        )

    def _structure(self) -> tuple:
        return (("uses_edr", self.uses_edr),)

    def _param_groups(self) -> list[list[nn.Parameter]]:
        m = self.module
        return [[m.adapter_image, m.adapter_text], [m.generator]]

    def forward(self, f: Tensor) -> CroftForward:
        m = self.module
        return croft_forward(
            f,
            self.text_features,
            m.adapter_image,
            m.adapter_text,
            self.ratio,
            self.ratio_text,
            self.logit_scale,
        )

    def _logits(self, features: Tensor) -> Tensor:
        return self.forward(features).logits

    def _embed(self, features: Tensor) -> Tensor:
        return self.forward(features).z

    def _text_side(self, text_features: Tensor) -> Tensor:
        return adapt(text_features, self.module.adapter_text, self.ratio_text)

    def _generator_loss(
        self, zc: Tensor, z: Tensor, u: Tensor, y: Tensor, same: Tensor
    ) -> dict[str, Tensor]:
        """docs/algorithm.md §4.2: ``CE(s·zc uᵀ, y) + λ1·disalign(zc, z)``."""
        ce = cross_entropy(self.logit_scale * zc @ u.mT, y)
        dis = disalignment(zc, z, same)
        return {"gen_ce": ce, "gen_disalign": dis, "gen_loss": ce + self.lambda1 * dis}

    def _edr_grad(self, rows: Tensor, u0: Tensor) -> Tensor:
        m, delta = self.module, self.edr_delta
        return self.energy_grad(
            rows, u0, m.adapter_image + delta, m.adapter_text + delta, self.edr_spec
        )

    def _edr(self, zc: Tensor, out: CroftForward, y: Tensor, same: Tensor) -> dict[str, Tensor]:
        """docs/algorithm.md §4.3: ``L1`` (CE on generated features, − λ1·disalign in branch A) and ``L2``."""
        m, s, r = self.module, self.logit_scale, self.ratio
        terms: dict[str, Tensor] = {}
        if self.branch_a:
            if self.mode == "faithful":
                zc_hat = r * zc + (1.0 - r) * (zc @ m.adapter_image)
            else:
                zc_hat = adapt(zc, m.adapter_image, r)
            terms["edr_ce"] = cross_entropy(s * zc_hat @ out.u.mT, y)
            terms["edr_disalign"] = disalignment(zc, out.z0, same)
            terms["edr_l1"] = terms["edr_ce"] - self.lambda1 * terms["edr_disalign"]
            row_sets = [stack_rows(out.z0, zc)] if self.mode == "faithful" else [out.z0, zc]
        else:
            terms["edr_ce"] = terms["edr_l1"] = cross_entropy(s * zc @ out.u.mT, y)
            row_sets = [out.z0]
        if self.uses_edr:
            terms["edr_grad"] = sum(self._edr_grad(rows, out.u0) for rows in row_sets)
        else:
            terms["edr_grad"] = torch.zeros((), device=self.device)
        return terms

    def _train_step(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        step = self._faithful_step if self.mode == "faithful" else self._clean_step
        return step(x, y)

    def _main_terms(
        self, out: CroftForward, zc: Tensor, y: Tensor, same: Tensor
    ) -> dict[str, Tensor]:
        terms = self._edr(zc, out, y, same)
        terms["ce"] = cross_entropy(out.logits, y)
        terms["loss"] = terms["ce"] + terms["edr_l1"] + self.lambda2 * terms["edr_grad"]
        return terms

    def _faithful_step(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """docs/algorithm.md §4.1: one forward, gen_step updates of everything, then the main update."""
        generator, same = self.module.generator, same_class(y)
        out = self.forward(x)  # kept (stale) for the inner steps and the main CE
        gen_terms: dict[str, Tensor] = {}
        for _ in range(self.gen_step):
            zc = generate(out.z, generator, transpose=False)
            gen_terms = self._generator_loss(zc, out.z, out.u, y, same)
            self._step_all(gen_terms["gen_loss"], retain_graph=True)
        zc = generate(out.z, generator, transpose=False)  # with the updated generator
        terms = self._main_terms(out, zc, y, same)
        self._step_all(terms["loss"], retain_graph=True)
        return {**gen_terms, **terms}, out.logits

    def _clean_step(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Generator steps on a frozen adapter, then one adapter step on a fresh forward."""
        adapter_optimizer, generator_optimizer = self.optimizers
        generator, same = self.module.generator, same_class(y)
        gen_terms: dict[str, Tensor] = {}
        if self.gen_step:
            with torch.no_grad():
                frozen = self.forward(x)
            for _ in range(self.gen_step):
                zc = generate(frozen.z, generator, transpose=True)
                gen_terms = self._generator_loss(zc, frozen.z, frozen.u, y, same)
                generator_optimizer.zero_grad(set_to_none=False)
                backward(gen_terms["gen_loss"])
                generator_optimizer.step()
        out = self.forward(x)
        zc = generate(out.z, generator.detach(), transpose=True)
        terms = self._main_terms(out, zc, y, same)
        adapter_optimizer.zero_grad(set_to_none=False)
        backward(terms["loss"])
        adapter_optimizer.step()
        return {**gen_terms, **terms}, out.logits


@register
class CroftFaithful(Croft):
    name = "croft_faithful"
    mode = "faithful"


@register
class CroftClean(Croft):
    name = "croft_clean"
    params = CroftCleanParams
    mode = "clean"


@register
class CroftNoEdr(Croft):
    """The ablation: faithful CRoFT with ``lambda2 = 0`` (no energy-gradient term)."""

    name = "croft_no_edr"
    mode = "faithful"
    params = CroftNoEdrParams
