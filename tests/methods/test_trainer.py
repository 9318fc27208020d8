"""The shared loop: the LR schedule, batching, and the stop on a non-finite loss."""

from __future__ import annotations

import math

import pytest
import torch

from croft_pipeline.methods import NonFiniteLossError, build_method
from croft_pipeline.methods.trainer import batch_indices, lr_at_epoch
from tests.methods.synthetic import CONFIGS, make_synthetic


def test_lr_per_epoch_is_warmup_then_cosine_as_in_croft_spec_3_1():
    lrs = [lr_at_epoch(e, lr=0.002, epochs=30, warmup_epochs=1, warmup_lr=1e-5) for e in range(30)]
    assert lrs[0] == 1e-5
    assert lrs[1] == 0.002
    for e in range(1, 30):
        assert lrs[e] == pytest.approx(
            0.002 * (1 + math.cos(math.pi * (e - 1) / 30)) / 2, rel=1e-12
        )
    assert lrs[16] == pytest.approx(0.001)
    assert all(a > b for a, b in zip(lrs[1:-1], lrs[2:], strict=True))


def test_batches_drop_the_last_partial_batch_unless_it_is_the_only_one():
    assert [len(b) for b in batch_indices(torch.arange(70), 32)] == [32, 32]
    assert [len(b) for b in batch_indices(torch.arange(20), 32)] == [20]


@pytest.mark.parametrize("name", ["croft_faithful", "linear_probe"])
def test_non_finite_loss_stops_with_epoch_step_term_and_keeps_last_good_weights(name, monkeypatch):
    data = make_synthetic(n_train=32)
    config = {**CONFIGS[name], "epochs": 3, "batch_size": 8}  # 4 steps per epoch
    method = build_method(name, config, data.text, data.logit_scale, seed=0)
    original = method._train_step
    calls, states = [], []

    def failing_step(x, y):
        terms, logits = original(x, y)  # the weights are updated before the loss is checked
        calls.append(len(calls))
        if len(calls) == 7:  # epoch 1, step 2
            terms = {**terms, "loss": terms["loss"] * float("nan")}
        else:
            states.append(method.state_dict())
        return terms, logits

    monkeypatch.setattr(method, "_train_step", failing_step)
    with pytest.raises(NonFiniteLossError, match=r"'loss' = nan at epoch 1, step 2") as info:
        method.fit(data.train, data.val)
    assert (info.value.epoch, info.value.step, info.value.term) == (1, 2, "loss")
    kept = method.state_dict()
    assert all(torch.equal(kept[k], states[-1][k]) for k in kept)


def test_diverging_weights_are_caught_too():
    data = make_synthetic()
    config = {**CONFIGS["linear_probe"], "lr": 1e30, "warmup_epochs": 0, "epochs": 3}
    method = build_method("linear_probe", config, data.text, data.logit_scale, seed=0)
    with pytest.raises(NonFiniteLossError, match="at epoch 0, step"):
        method.fit(data.train, data.val)
    assert all(torch.isfinite(v).all() for v in method.state_dict().values())
