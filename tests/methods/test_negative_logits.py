"""Negative labels go through a method's text side as its own class names do
(``Method.negative_logits``): given the ID class names' text features as the "negatives", every
method whose logits are ``s · embed · text_sideᵀ`` gives back its own logits."""

from __future__ import annotations

import pytest
import torch

from croft_pipeline.methods import METHODS, build_method
from croft_pipeline.methods.wise import interpolate
from tests.methods.synthetic import CONFIGS, make_synthetic

TRAINED = [name for name in sorted(METHODS) if METHODS[name].trains]
HEAD_ONLY = {"linear_probe", "tip_adapter_f"}  # trained class rows/cache: not a text side


@pytest.fixture(scope="module")
def fitted():
    data = make_synthetic()
    zero_shot = build_method("zero_shot", CONFIGS["zero_shot"], data.text, data.logit_scale)
    methods = {"zero_shot": zero_shot}
    for name in TRAINED:
        config = {**CONFIGS[name], "lr": 0.05, "weight_decay": 0.0}
        methods[name] = build_method(name, config, data.text, data.logit_scale, seed=0)
        methods[name].fit(data.train, data.val)
    return data, zero_shot, methods


@pytest.mark.parametrize("name", ["zero_shot", *sorted(set(TRAINED) - HEAD_ONLY)])
def test_the_id_class_names_as_negatives_give_the_methods_own_logits(fitted, name):
    data, zero_shot, methods = fitted
    x, model = data.shifted.features, methods[name]
    assert torch.allclose(model.negative_logits(x, data.text), model.logits(x), atol=1e-5)
    blend = interpolate(model, zero_shot, 0.5)
    assert torch.allclose(blend.negative_logits(x, data.text), blend.logits(x), atol=1e-5)


def test_a_trained_head_scores_new_names_as_its_untrained_rows(fitted):
    """Linear probe and Tip-Adapter-F learned nothing about a new name: its logits are
    zero-shot CLIP's (a head row initialised from its text, bias 0; no cache entries)."""
    data, zero_shot, methods = fitted
    x = data.shifted.features
    for name in HEAD_ONLY:
        assert not torch.allclose(methods[name].logits(x), zero_shot.logits(x), atol=1e-3)
        assert torch.allclose(
            methods[name].negative_logits(x, data.text), zero_shot.logits(x), atol=1e-5
        )


def test_croft_negatives_use_its_trained_text_adapter(fitted):
    data, zero_shot, methods = fitted
    x, croft = data.shifted.features, methods["croft_clean"]
    assert not torch.allclose(croft.module.adapter_text, torch.eye(data.text.shape[1]))
    difference = croft.negative_logits(x, data.text) - zero_shot.negative_logits(x, data.text)
    assert difference.abs().max() > 1e-4  # the adapted text side, not CLIP's
