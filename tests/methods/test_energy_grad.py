"""The closed-form EDR term equals the double-backpropagation one (value and gradients)."""

from __future__ import annotations

import pytest
import torch

from croft_pipeline.methods.energy_grad import (
    EnergyGradSpec,
    energy_grad_sq_autograd,
    energy_grad_sq_closed,
)

SPECS = {
    "faithful_setup2": EnergyGradSpec("expcos", "mean", "sum", True, False, 0.2, 0.5),
    "faithful_setup1": EnergyGradSpec("expcos", "sum", "mean", True, False, 0.2, 0.5),
    "clean_lse": EnergyGradSpec("lse", "mean", "sum", False, True, 0.2, 0.5, logit_scale=30.0),
    "clean_lse_sum_shared": EnergyGradSpec("lse", "sum", "sum", True, True, 0.5, 0.3, 10.0),
}


def _inputs(dtype, rows=12, classes=5, dim=9, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def leaf(*shape, scale=1.0, eye=False):
        value = scale * torch.randn(*shape, generator=gen, dtype=dtype)
        return (value + torch.eye(dim, dtype=dtype) if eye else value).requires_grad_()

    return [
        leaf(rows, dim, scale=3.0),
        leaf(classes, dim),
        leaf(dim, dim, scale=0.2, eye=True),
        leaf(dim, dim, scale=0.2, eye=True),
    ]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_closed_form_equals_autograd_within_1e_5(spec_name, dtype):
    spec = SPECS[spec_name]
    inputs = _inputs(dtype)
    closed = energy_grad_sq_closed(*inputs, spec)
    reference = energy_grad_sq_autograd(*inputs, spec)
    assert closed.item() > 0
    torch.testing.assert_close(closed, reference, rtol=1e-5, atol=1e-12)
    grads_closed = torch.autograd.grad(closed, inputs)
    grads_reference = torch.autograd.grad(reference, inputs)
    for mine, theirs in zip(grads_closed, grads_reference, strict=True):
        scale = theirs.abs().max()
        assert (mine - theirs).abs().max() <= 1e-5 * scale


def test_shared_delta_is_the_norm_of_the_summed_gradient():
    """Official quirk: one δ on both matrices squares g_img + g_txt, not each separately."""
    inputs = _inputs(torch.float64)
    shared = SPECS["faithful_setup2"]
    separate = EnergyGradSpec(**{**shared.__dict__, "shared": False})
    x, t, wi, wt = inputs
    di = torch.zeros_like(wi, requires_grad=True)
    dt = torch.zeros_like(wt, requires_grad=True)
    a = torch.nn.functional.normalize(0.2 * x @ (wi + di) + 0.8 * x, dim=1, eps=0)
    b = torch.nn.functional.normalize(0.5 * t @ (wt + dt) + 0.5 * t, dim=1, eps=0)
    gi, gt = torch.autograd.grad(torch.exp(a @ b.T).mean(), [di, dt])
    rtol = dict(rtol=1e-5, atol=0)  # the 1e-6 in the normalization is far below this
    torch.testing.assert_close(
        energy_grad_sq_closed(*inputs, shared), ((gi + gt) ** 2).sum(), **rtol
    )
    torch.testing.assert_close(
        energy_grad_sq_closed(*inputs, separate), (gi**2).sum() + (gt**2).sum(), **rtol
    )
