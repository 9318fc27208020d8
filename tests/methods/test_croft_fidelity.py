"""CRoFT against independent references written from docs/algorithm.md §2–§5 (plain autograd)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from croft_pipeline.methods import build_method
from tests.methods.synthetic import CONFIGS, make_synthetic

LR, MOMENTUM, WD = 0.01, 0.9, 0.1


def n(v):
    return v / (v.norm(dim=-1, keepdim=True) + 1e-6)


def sgd_first(p, g):
    """torch.optim.SGD's first step: buffer = d_p = g + wd·p; p - lr·buffer."""
    d_p = g + WD * p
    return (p - LR * d_p).detach(), d_p


def sgd_next(p, g, buf):
    buf = MOMENTUM * buf + (g + WD * p)
    return (p - LR * buf).detach(), buf


def _fixed(seed=0, rows=6, classes=3, dim=5):
    gen = torch.Generator().manual_seed(seed)
    f = 3.0 * torch.randn(rows, dim, generator=gen)
    t = 2.0 * torch.randn(classes, dim, generator=gen)
    y = torch.tensor([0, 1, 2, 0, 1, 0])[:rows]
    near_eye = [torch.eye(dim) + 0.2 * torch.randn(dim, dim, generator=gen) for _ in range(3)]
    return f, t, y, near_eye


def _method(name, t, weights, **overrides):
    config = {**CONFIGS[name], "lr": LR, "momentum": MOMENTUM, "weight_decay": WD, **overrides}
    method = build_method(name, config, t, logit_scale=7.0, seed=0)
    with torch.no_grad():
        for param, value in zip(_params(method), weights, strict=True):
            param.copy_(value)
    method._make_optimizers()
    return method


def _params(method):
    m = method.module
    return [m.adapter_image, m.adapter_text, m.generator]


def reference_faithful_iteration(f, t, y, weights, s, setup, gen_step, lam1=15.0, lam2=10.0):
    """docs/algorithm.md §4.1–§4.3, with the in-place updates made explicit as new leaves.

    The main loss reaches the *old* leaves through the stale forward graph and the *new* leaves
    through EDR; the in-place implementation accumulates both into one ``.grad``.
    """
    r, rt = 0.2, 0.5
    wi, wt, g = (w.clone().requires_grad_() for w in weights)
    z = n(r * f @ wi.T + (1 - r) * f)
    u = n(rt * t @ wt.T + (1 - rt) * t)
    z0, u0 = n(f), n(t)
    logits = s * z @ u.T
    same = (y[:, None] == y[None, :]).float()
    versions = [[wi], [wt], [g]]  # every leaf a parameter has been, oldest first
    buffers, out = None, {}

    def grads_of(loss):
        """Gradient w.r.t. each parameter: the sum over all of its versions (stale graph)."""
        flat = [v for vs in versions for v in vs]
        parts = iter(torch.autograd.grad(loss, flat, retain_graph=True, allow_unused=True))
        per_version = [[next(parts) for _ in vs] for vs in versions]
        return [
            sum(p if p is not None else torch.zeros_like(v) for v, p in zip(vs, ps, strict=True))
            for vs, ps in zip(versions, per_version, strict=True)
        ]

    def step(grads):
        nonlocal buffers
        current = [vs[-1] for vs in versions]
        if buffers is None:
            stepped = [sgd_first(p, gr) for p, gr in zip(current, grads, strict=True)]
        else:
            stepped = [sgd_next(p, gr, b) for p, gr, b in zip(current, grads, buffers, strict=True)]
        buffers = [b for _, b in stepped]
        for vs, (p, _) in zip(versions, stepped, strict=True):
            vs.append(p.requires_grad_())

    for _ in range(gen_step):
        zc = n(z @ versions[2][-1] + z)
        loss_gen = F.cross_entropy(s * zc @ u.T, y) + lam1 * (same * (zc @ z.T)).mean()
        out["gen_loss"], out["gen_grads"] = loss_gen.detach(), grads_of(loss_gen)
        step(out["gen_grads"])
    wi1, wt1, g1 = (vs[-1] for vs in versions)
    zc = n(z @ g1 + z)
    if gen_step > 0:  # branch A
        dis0 = (same * (zc @ z0.T)).mean()
        zc_hat = r * zc + (1 - r) * (zc @ wi1)
        l1 = F.cross_entropy(s * zc_hat @ u.T, y) - lam1 * dis0
        zp, z0_rows = torch.cat([z, zc_hat]), torch.cat([z0, zc])
    else:  # branch B
        l1 = F.cross_entropy(s * zc @ u.T, y)
        zp, z0_rows = z, z0
    d = torch.full_like(wi1, 1e-4, requires_grad=True)
    zn = n(r * z0_rows @ (wi1 + d) + (1 - r) * z0_rows)
    un = n(rt * u0 @ (wt1 + d) + (1 - rt) * u0)
    pd = torch.exp(zn @ un.T) - torch.exp(zp @ u.T)
    if setup == "setup1":
        grad = torch.autograd.grad(pd.sum(), d, create_graph=True)[0]
        l2 = (grad**2).mean()
    else:
        grad = torch.autograd.grad(pd.mean(), d, create_graph=True)[0]
        l2 = (grad**2).sum()
    loss = F.cross_entropy(logits, y) + l1 + lam2 * l2
    main_grads = grads_of(loss)
    step(main_grads)
    final = [vs[-1].detach() for vs in versions]
    out.update(loss=loss.detach(), l2=l2.detach(), main_grads=main_grads, final=final)
    return out


@pytest.mark.parametrize("edr_grad", ["closed_form", "autograd"])
@pytest.mark.parametrize(
    ("setup", "gen_step"), [("setup2", 1), ("setup1", 1), ("setup2", 2), ("setup2", 0)]
)
def test_faithful_iteration_matches_the_spec_reference(setup, gen_step, edr_grad):
    f, t, y, weights = _fixed()
    method = _method(
        "croft_faithful", t, weights, edr_setup=setup, gen_step=gen_step, edr_grad=edr_grad
    )
    if gen_step == 1:  # the generator loss and its gradients, before any update
        probe = _method("croft_faithful", t, weights, edr_setup=setup, gen_step=gen_step)
        out = probe.forward(f)
        zc = n(out.z @ probe.module.generator + out.z)
        same = (y[:, None] == y[None, :]).float()
        loss_gen = probe._generator_loss(zc, out.z, out.u, y, same)["gen_loss"]
        grads = torch.autograd.grad(loss_gen, _params(probe))
    terms, _ = method._train_step(f, y)
    ref = reference_faithful_iteration(f, t, y, weights, 7.0, setup, gen_step)

    close = dict(rtol=1e-4, atol=1e-6)
    if gen_step == 1:
        torch.testing.assert_close(loss_gen, ref["gen_loss"], **close)
        for mine, theirs in zip(grads, ref["gen_grads"], strict=True):
            torch.testing.assert_close(mine, theirs, **close)
    torch.testing.assert_close(terms["loss"], ref["loss"], **close)
    torch.testing.assert_close(terms["edr_grad"], ref["l2"], **close)
    for param, grad, final in zip(_params(method), ref["main_grads"], ref["final"], strict=True):
        torch.testing.assert_close(param.grad, grad, **close)  # .grad holds the main backward's
        torch.testing.assert_close(param.detach(), final, **close)


def reference_clean_iteration(f, t, y, weights, s, lam1=15.0, lam2=10.0):
    """The clean variant written out: generator step on a frozen adapter, then the adapter step
    with ``‖∇E(ID rows)‖² + ‖∇E(generated rows)‖²``, separate gradients per matrix,
    ``E = mean_n (1/s)·logsumexp_k(s·cos)``, the forward's adapter everywhere."""
    r, rt = 0.2, 0.5
    wi, wt, g = (w.clone().requires_grad_() for w in weights)

    def adapt(x, w, ratio):
        return n(ratio * x @ w.T + (1 - ratio) * x)

    same = (y[:, None] == y[None, :]).float()
    z, u = adapt(f, wi, r).detach(), adapt(t, wt, rt).detach()
    zc = n(z @ g.T + z)
    loss_gen = F.cross_entropy(s * zc @ u.T, y) + lam1 * (same * (zc @ z.T)).mean()
    g1 = sgd_first(g, torch.autograd.grad(loss_gen, g)[0])[0]

    z, u, z0, u0 = adapt(f, wi, r), adapt(t, wt, rt), n(f), n(t)
    zc = n(z @ g1.T + z)
    l1 = F.cross_entropy(s * adapt(zc, wi, r) @ u.T, y) - lam1 * (same * (zc @ z0.T)).mean()

    def grad_sq(rows):
        di = torch.zeros_like(wi, requires_grad=True)
        dt = torch.zeros_like(wt, requires_grad=True)
        cos = adapt(rows, wi + di, r) @ adapt(u0, wt + dt, rt).T
        energy = (torch.logsumexp(s * cos, dim=1) / s).mean()
        gi, gt = torch.autograd.grad(energy, [di, dt], create_graph=True)
        return (gi**2).sum() + (gt**2).sum()

    loss = F.cross_entropy(s * z @ u.T, y) + l1 + lam2 * (grad_sq(z0) + grad_sq(zc))
    gwi, gwt = torch.autograd.grad(loss, [wi, wt])
    return loss.detach(), [sgd_first(wi, gwi)[0], sgd_first(wt, gwt)[0], g1]


def test_clean_iteration_matches_its_reference():
    f, t, y, weights = _fixed(seed=1)
    method = _method("croft_clean", t, weights, edr_delta=0.0)
    terms, _ = method._train_step(f, y)
    loss, final = reference_clean_iteration(f, t, y, weights, 7.0)
    torch.testing.assert_close(terms["loss"], loss, rtol=1e-4, atol=1e-6)
    for param, expected in zip(_params(method), final, strict=True):
        torch.testing.assert_close(param.detach(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["croft_faithful", "croft_clean", "croft_no_edr"])
def test_identity_adapters_give_zero_shot_logits(name):
    data = make_synthetic(dim=32)
    croft = build_method(name, CONFIGS[name], data.text, data.logit_scale, seed=0)
    zero_shot = build_method("zero_shot", CONFIGS["zero_shot"], data.text, data.logit_scale)
    x = data.shifted.features
    torch.testing.assert_close(croft.logits(x), zero_shot.logits(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(croft.embed(x), F.normalize(x, dim=1), rtol=1e-5, atol=1e-6)


def test_adapters_move_away_from_identity_and_change_the_logits():
    data = make_synthetic(dim=32)
    config = {**CONFIGS["croft_faithful"], "lr": 0.05, "warmup_epochs": 0}
    croft = build_method("croft_faithful", config, data.text, data.logit_scale, seed=0)
    before = croft.logits(data.shifted.features)
    croft.fit(data.train, data.val)
    assert not torch.allclose(croft.module.adapter_image, torch.eye(32))
    assert not torch.allclose(croft.logits(data.shifted.features), before)
