"""A stack of grid points against the single fits of its points: same points kept, same epochs,
the same per-point histories and weights to float32 rounding (batched matmuls reassociate
sums)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from croft_pipeline.methods import (
    METHODS,
    NonFiniteLossError,
    build_method,
    fit_selected,
    grid_points,
)
from croft_pipeline.methods.batched import StackedSGD
from croft_pipeline.methods.selection import fit_or_error, fit_points
from tests.methods.synthetic import CONFIGS, make_synthetic

DIVERGES = 1e30  # an lr no point survives: its NaNs must stay in its own slice
CLOSE = dict(rtol=1e-4, atol=1e-5)  # float32 reassociation, compounded over the epochs
GRIDS = {  # >= 3 points each, one diverging, and a per-point attribute varied where there is one
    "linear_probe": [{"lr": lr} for lr in (0.01, DIVERGES, 0.05, 0.2)],
    "clip_adapter": [
        {"lr": 0.05, "ratio": 0.2},
        {"lr": DIVERGES, "ratio": 0.5},
        {"lr": 0.2, "ratio": 0.5},
    ],
    "tip_adapter_f": [
        {"lr": 0.01, "alpha": 1.0},
        {"lr": DIVERGES, "alpha": 2.0},
        {"lr": 0.05, "alpha": 2.0, "beta": 5.0},
    ],
    "croft_faithful": [
        {"lr": 0.01, "lambda2": 10.0},
        {"lr": DIVERGES, "lambda2": 10.0},
        {"lr": 0.05, "lambda2": 100.0},
        {"lr": 0.05, "lambda2": 0.0},
    ],
    "croft_clean": [
        {"lr": 0.01, "lambda2": 10.0},
        {"lr": DIVERGES, "lambda2": 100.0},
        {"lr": 0.05, "lambda2": 100.0, "ratio": 0.5},
    ],
    "croft_no_edr": [{"lr": 0.01}, {"lr": DIVERGES}, {"lr": 0.05, "lambda1": 5.0}],
}
TRAINED = sorted(name for name, cls in METHODS.items() if cls.trains)


def _methods(name, data, points, **overrides):
    config = {**CONFIGS[name], "epochs": 4, "warmup_epochs": 0, **overrides}  # epoch 0 trains
    return [
        build_method(name, {**config, **point}, data.text, data.logit_scale, seed=3)
        for point in points
    ]


def _assert_same_fits(sequential, batched, seq_methods, bat_methods):
    for fit_s, fit_b, m_s, m_b in zip(sequential, batched, seq_methods, bat_methods, strict=True):
        if isinstance(fit_s, NonFiniteLossError):  # recorded exactly as the sequential path does
            assert isinstance(fit_b, NonFiniteLossError) and str(fit_b) == str(fit_s)
            continue
        assert (fit_b.best_epoch, fit_b.best_val_accuracy, fit_b.epochs_run) == (
            fit_s.best_epoch,
            fit_s.best_val_accuracy,
            fit_s.epochs_run,
        )
        assert [sorted(r) for r in fit_b.history] == [sorted(r) for r in fit_s.history]
        for rec_b, rec_s in zip(fit_b.history, fit_s.history, strict=True):
            assert rec_b["val_accuracy"] == rec_s["val_accuracy"]
            assert rec_b["train_accuracy"] == rec_s["train_accuracy"]
            torch.testing.assert_close(rec_b, rec_s, **CLOSE)
        torch.testing.assert_close(m_b.state_dict(), m_s.state_dict(), **CLOSE)


@pytest.mark.parametrize("name", TRAINED)
def test_stacked_points_match_their_single_fits(name):
    assert name in GRIDS, f"{name}: add a grid to GRIDS"
    data = make_synthetic(dim=16, n_train=40)
    seq_methods = _methods(name, data, GRIDS[name])
    for method in seq_methods:
        method._prepare(data.train)  # tip_adapter_f: its cache exists from here on
    initial = [m.state_dict() for m in seq_methods]
    sequential = [fit_or_error(m, data.train, data.val) for m in seq_methods]
    bat_methods = _methods(name, data, GRIDS[name])
    batched = fit_points(bat_methods, data.train, data.val)

    errors = [isinstance(fit, NonFiniteLossError) for fit in sequential]
    assert errors == [point["lr"] == DIVERGES for point in GRIDS[name]]
    _assert_same_fits(sequential, batched, seq_methods, bat_methods)
    moved = [  # the kept weights left the initial ones: equal weights mean equal training
        max(float((m.state_dict()[k] - init[k]).abs().max()) for k in init)
        for m, init, fit in zip(seq_methods, initial, sequential, strict=True)
        if not isinstance(fit, NonFiniteLossError)
    ]
    assert min(moved) > 1e-3


def test_structural_keys_split_the_grid_into_stacks():
    """``reduction`` (a shape) and ``gen_step`` (a code path) cannot vary within a stack: the
    points train as one stack per value, still matching their single fits."""
    data = make_synthetic(dim=16, n_train=40)
    for name, points in (
        ("clip_adapter", [{"reduction": r, "lr": lr} for r in (2, 4) for lr in (0.05, 0.2)]),
        ("croft_clean", [{"gen_step": g, "lr": lr} for g in (0, 1) for lr in (0.01, 0.05)]),
    ):
        methods = _methods(name, data, points)
        signatures = {m.batch_signature() for m in methods}
        assert len(signatures) == 2
        seq_methods = _methods(name, data, points)
        sequential = [fit_or_error(m, data.train, data.val) for m in seq_methods]
        _assert_same_fits(
            sequential, fit_points(methods, data.train, data.val), seq_methods, methods
        )


def test_untrained_methods_are_fitted_alone():
    data = make_synthetic()
    (zero_shot,) = _zero = [build_method("zero_shot", CONFIGS["zero_shot"], data.text, 20.0)]
    (fit,) = fit_points(_zero, data.train, data.val)
    assert (
        fit.best_epoch == -1
        and fit.best_val_accuracy == zero_shot.fit(data.train, data.val).best_val_accuracy
    )


@pytest.mark.parametrize("name", ["linear_probe", "croft_faithful"])
def test_fit_selected_keeps_the_point_of_the_single_fits(name):
    data = make_synthetic(dim=16, n_train=40)
    keys = sorted(GRIDS[name][0])
    grid = {key: sorted({p[key] for p in GRIDS[name] if key in p}) for key in keys}
    config = {**CONFIGS[name], "epochs": 4}
    bat = fit_selected(name, config, grid, data.text, data.logit_scale, 3, data.train, data.val)
    points = grid_points(grid)
    singles = _methods(name, data, points, warmup_epochs=config["warmup_epochs"])
    fits = [fit_or_error(m, data.train, data.val) for m in singles]
    kept = max(
        (i for i, f in enumerate(fits) if not isinstance(f, NonFiniteLossError)),
        key=lambda i: (fits[i].best_val_accuracy, -i),
    )
    assert bat.config == {**config, **points[kept]}
    assert bat.report.best_epoch == fits[kept].best_epoch
    assert [r["point"] for r in bat.grid] == points
    for row, fit in zip(bat.grid, fits, strict=True):
        error = isinstance(fit, NonFiniteLossError)
        assert row.get("error") == (str(fit) if error else None)
        assert row.get("val_accuracy") == (None if error else fit.best_val_accuracy)
        assert row.get("best_epoch") == (None if error else fit.best_epoch)
    torch.testing.assert_close(bat.method.state_dict(), singles[kept].state_dict(), **CLOSE)


def test_stacked_sgd_is_per_point_torch_sgd():
    gen = torch.Generator().manual_seed(0)
    lrs, momenta, decays = [0.01, 0.5, 2.0], [0.9, 0.0, 0.5], [0.1, 0.0, 5e-4]
    init = torch.randn(3, 5, 4, generator=gen)
    grads = [torch.randn(3, 5, 4, generator=gen) for _ in range(4)]
    expected = []
    for g, (lr, momentum, decay) in enumerate(zip(lrs, momenta, decays, strict=True)):
        p = nn.Parameter(init[g].clone())
        sgd = torch.optim.SGD([p], lr=lr, momentum=momentum, weight_decay=decay)
        for grad in grads:
            p.grad = grad[g].clone()
            sgd.step()
        expected.append(p.detach())
    p = nn.Parameter(init.clone())
    stacked = StackedSGD([p], torch.tensor(momenta), torch.tensor(decays))
    stacked.param_groups[0]["lr"] = torch.tensor(lrs)
    for grad in grads:
        p.grad = grad.clone()
        stacked.step()
    torch.testing.assert_close(p.detach(), torch.stack(expected), rtol=1e-6, atol=1e-7)
