"""Every registered method honours the one contract (fit, logits, embed, state round trip)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

from croft_pipeline.methods import METHODS, build_method
from tests.methods.synthetic import CONFIGS, make_synthetic

REQUIRED = {
    "zero_shot",
    "linear_probe",
    "clip_adapter",
    "tip_adapter_f",
    "croft_faithful",
    "croft_clean",
    "croft_no_edr",
}


def test_registry_holds_every_required_method_and_the_test_configs_cover_it():
    assert set(METHODS) >= REQUIRED
    assert set(CONFIGS) == set(METHODS)


@pytest.fixture(scope="module")
def data():
    return make_synthetic()


def _fit(name, data, seed=1):
    method = build_method(name, CONFIGS[name], data.text, data.logit_scale, seed)
    logged = []
    report = method.fit(data.train, data.val, lambda step, values: logged.append((step, values)))
    return method, report, logged


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name, data):
    method, report, logged = _fit(name, data)
    n, k, d = len(data.shifted.labels), data.text.shape[0], data.text.shape[1]

    logits = method.logits(data.shifted.features)
    assert logits.shape == (n, k) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    embedding = method.embed(data.shifted.features)
    assert embedding.shape == (n, d)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(n), atol=1e-4)

    trained = name != "zero_shot"
    assert report.epochs_run == (CONFIGS[name]["epochs"] if trained else 0)
    assert len(report.history) == max(1, report.epochs_run) == len(logged)
    val_accs = [row["val_accuracy"] for row in report.history]
    assert report.best_val_accuracy == max(val_accs)
    if trained:
        assert report.best_epoch == val_accs.index(max(val_accs))
        assert all({"loss", "lr", "train_accuracy"} <= set(row) for row in report.history)
        # the kept weights are those of the best epoch: re-scoring val reproduces its accuracy
        val_acc = (method.logits(data.val.features).argmax(1) == data.val.labels).float().mean()
        assert float(val_acc) == pytest.approx(report.best_val_accuracy)

    # serving: rebuild from (name, config, text, scale) + safetensors bytes of the state dict
    state = load(save(method.state_dict()))
    rebuilt = build_method(name, CONFIGS[name], data.text, data.logit_scale, seed=99)
    rebuilt.load_state_dict(state)
    assert torch.equal(rebuilt.logits(data.shifted.features), logits)
    assert torch.equal(rebuilt.embed(data.shifted.features), embedding)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_same_seed_same_weights_bit_for_bit_on_cpu(name, data):
    first, report_a, _ = _fit(name, data, seed=3)
    second, report_b, _ = _fit(name, data, seed=3)
    state_a, state_b = first.state_dict(), second.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)
    assert report_a.history == report_b.history
    if name != "zero_shot":  # another seed draws other views and batches
        other, _, _ = _fit(name, data, seed=4)
        assert any(not torch.equal(state_a[k], other.state_dict()[k]) for k in state_a)


def test_unknown_method_and_bad_config_are_named():
    data = make_synthetic()
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        build_method("nope", {}, data.text, 1.0)
    with pytest.raises(
        ValueError, match=r"croft_faithful.*missing keys \['lambda2'\].*unknown keys \['lamda2'\]"
    ):
        config = {**CONFIGS["croft_faithful"], "lamda2": 1.0}
        del config["lambda2"]
        build_method("croft_faithful", config, data.text, 1.0)
    with pytest.raises(ValueError, match="clip_adapter: epochs must be an integer >= 1, got 0"):
        build_method("clip_adapter", {**CONFIGS["clip_adapter"], "epochs": 0}, data.text, 1.0)
    with pytest.raises(ValueError, match="linear_probe: lr must be > 0, got 0"):  # trains nothing
        build_method("linear_probe", {**CONFIGS["linear_probe"], "lr": 0}, data.text, 1.0)
    with pytest.raises(ValueError, match="croft_clean: edr_setup must be one of .*got 'setup3'"):
        build_method(
            "croft_clean", {**CONFIGS["croft_clean"], "edr_setup": "setup3"}, data.text, 1.0
        )
    with pytest.raises(ValueError, match="lambda2 must be 0"):
        build_method("croft_no_edr", {**CONFIGS["croft_no_edr"], "lambda2": 1.0}, data.text, 1.0)
