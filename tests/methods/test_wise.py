"""WiSE-FT: exact endpoints, weight-space interpolation for methods that start at zero-shot,
output-space blending for the others, α chosen on validation (smallest on ties)."""

from __future__ import annotations

import pytest
import torch

from croft_pipeline.methods import METHODS, build_method
from croft_pipeline.methods.wise import (
    OUTPUT,
    WEIGHT,
    Blend,
    choose_alpha,
    interpolate,
    interpolated_state,
    space_of,
)
from tests.methods.synthetic import CONFIGS, make_synthetic

TRAINED = [name for name in sorted(METHODS) if METHODS[name].trains]


@pytest.fixture(scope="module")
def fitted():
    data = make_synthetic()
    zero_shot = build_method("zero_shot", CONFIGS["zero_shot"], data.text, data.logit_scale)
    methods = {}
    for name in TRAINED:
        config = {**CONFIGS[name], "lr": 0.05, "weight_decay": 0.0}
        method = build_method(name, config, data.text, data.logit_scale, seed=0)
        method.fit(data.train, data.val)
        methods[name] = method
    return data, zero_shot, methods


@pytest.mark.parametrize("name", TRAINED)
def test_alpha_zero_is_zero_shot_and_alpha_one_is_the_fine_tuned_model_exactly(fitted, name):
    data, zero_shot, methods = fitted
    x = data.shifted.features
    fine_tuned = methods[name]
    assert not torch.equal(fine_tuned.logits(x), zero_shot.logits(x))  # it did train
    assert torch.equal(interpolate(fine_tuned, zero_shot, 0.0).logits(x), zero_shot.logits(x))
    assert torch.equal(interpolate(fine_tuned, zero_shot, 1.0).logits(x), fine_tuned.logits(x))
    middle = interpolate(fine_tuned, zero_shot, 0.5).logits(x)
    assert not torch.equal(middle, zero_shot.logits(x))
    assert not torch.equal(middle, fine_tuned.logits(x))


def test_methods_that_start_at_zero_shot_interpolate_weights_the_others_outputs(fitted):
    data, zero_shot, methods = fitted
    spaces = {name: space_of(method) for name, method in methods.items()}
    assert spaces == {
        "linear_probe": WEIGHT,
        "croft_faithful": WEIGHT,
        "croft_clean": WEIGHT,
        "croft_no_edr": WEIGHT,
        "clip_adapter": OUTPUT,
        "tip_adapter_f": OUTPUT,
    }
    x = data.shifted.features
    for name, method in methods.items():
        if spaces[name] == WEIGHT:  # the untrained method is the zero-shot classifier
            fresh = build_method(name, method.config, data.text, data.logit_scale, seed=0)
            torch.testing.assert_close(fresh.logits(x), zero_shot.logits(x), rtol=1e-5, atol=1e-4)
    # linear probe logits are affine in (W, b): the weight-space midpoint is the logit midpoint
    probe = methods["linear_probe"]
    half = interpolate(probe, zero_shot, 0.5)
    torch.testing.assert_close(
        half.logits(x), 0.5 * (probe.logits(x) + zero_shot.logits(x)), rtol=1e-5, atol=1e-5
    )
    state = interpolated_state(probe, 0.25)
    start = build_method("linear_probe", probe.config, data.text, data.logit_scale).state_dict()
    for key, value in probe.state_dict().items():
        torch.testing.assert_close(state[key], 0.75 * start[key] + 0.25 * value)
    # output space: the blend of the two models' logits
    adapter = methods["clip_adapter"]
    blend = interpolate(adapter, zero_shot, 0.3)
    assert isinstance(blend, Blend)
    torch.testing.assert_close(blend.logits(x), 0.7 * zero_shot.logits(x) + 0.3 * adapter.logits(x))
    assert torch.allclose(blend.embed(x).norm(dim=1), torch.ones(len(x)), atol=1e-5)
    with pytest.raises(ValueError, match="does not start at zero-shot"):
        interpolated_state(adapter, 0.5)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        interpolate(probe, zero_shot, 1.5)


def test_alpha_is_chosen_on_the_given_set_smallest_on_ties(fitted):
    data, zero_shot, methods = fitted
    probe = methods["linear_probe"]
    alpha, by_alpha = choose_alpha(
        probe, zero_shot, data.val.features, data.val.labels, [1.0, 0.0, 0.5]
    )
    assert set(by_alpha) == {"0", "0.5", "1"}
    best = max(by_alpha.values())
    assert by_alpha[f"{alpha:g}"] == best
    assert alpha == min(a for a in (0.0, 0.5, 1.0) if by_alpha[f"{a:g}"] == best)


def test_a_stored_wise_point_rebuilds_exactly_at_its_endpoints(fitted):
    """The summary entry of a WiSE-FT point, rebuilt as predictions and serving rebuild it: at
    α = 0 it is zero-shot CLIP exactly (CRoFT's identity adapters differ by the +1e-6 of its
    normalization), at α = 1 the fine-tuned weights."""
    from croft_pipeline.common.files import tensors_digest
    from croft_pipeline.methods.fitted import fitted_model
    from croft_pipeline.methods.train_summary import MethodSummary, SeedWise

    data, zero_shot, methods = fitted
    croft = methods["croft_clean"]
    stored = {"croft_clean/seed_0": croft.state_dict()}
    digest = tensors_digest(croft.state_dict())
    x = data.shifted.features
    for alpha, expected in ((0.0, zero_shot.logits(x)), (1.0, croft.logits(x))):
        point = SeedWise(config=croft.config, alpha=alpha, adapter_sha256=digest)
        entry = MethodSummary(base="croft_clean", space=WEIGHT, seeds={0: point})
        model = fitted_model(
            "croft_clean+wise", entry, 0, stored.__getitem__, data.text, data.logit_scale
        )
        assert torch.equal(model.logits(x), expected)


def test_weights_other_than_the_recorded_ones_are_refused(fitted):
    """The filed case: a changed adapter file was bundled and served though evaluation had
    scored the predictions of the weights train wrote."""
    from croft_pipeline.common.files import CorruptFileError, tensors_digest
    from croft_pipeline.methods.fitted import fitted_model
    from croft_pipeline.methods.train_summary import MethodSummary, SeedFit

    data, _, methods = fitted
    croft = methods["croft_clean"]
    state = croft.state_dict()
    changed = {key: value.clone() for key, value in state.items()}
    first = next(iter(changed))
    changed[first].view(-1)[0] += 1e-3
    for recorded, match in (
        (tensors_digest(state), "are not the ones train_summary.json records"),
        ("", "records no adapter_sha256"),
    ):
        fit = SeedFit(config=croft.config, best_val_accuracy=0.5, adapter_sha256=recorded)
        entry = MethodSummary(seeds={0: fit})
        with pytest.raises(CorruptFileError, match=match):
            fitted_model(
                "croft_clean",
                entry,
                0,
                {"croft_clean/seed_0": changed}.__getitem__,
                data.text,
                data.logit_scale,
            )
