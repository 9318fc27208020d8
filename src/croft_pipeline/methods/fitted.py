"""Rebuild the fitted models a :class:`~croft_pipeline.methods.train_summary.TrainSummary`
describes, from their stored weights.

An entry is a trained method (its own weights), or a WiSE-FT point of one (``base``, ``space``,
per-seed ``alpha``), rebuilt from the base method's weights. The weights must be the ones the
summary recorded (their digest): the weights whose predictions evaluation scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from croft_pipeline.common.files import CorruptFileError, tensors_digest
from croft_pipeline.methods.base import partition_id
from croft_pipeline.methods.registry import build_method, restore_method
from croft_pipeline.methods.train_summary import MethodSummary
from croft_pipeline.methods.wise import interpolate

Weights = Callable[[str], Mapping[str, Tensor]]  # partition id -> state dict


def zero_shot_model(text_features: Tensor, logit_scale: float, device: str = "cpu"):
    return build_method("zero_shot", {"device": device}, text_features, logit_scale)


def fitted_model(
    name: str,
    entry: MethodSummary,
    seed: int,
    weights: Weights,
    text_features: Tensor,
    logit_scale: float,
):
    """The model of ``train_summary.methods[name]`` at ``seed`` (``logits`` and ``embed``).

    A WiSE-FT entry is rebuilt from its base method's weights by :func:`methods.wise.interpolate`
    (zero-shot CLIP exactly at α = 0, the fine-tuned model at α = 1), the one rule that chose α.
    """
    run = entry.seeds[seed]
    base = entry.base or name
    state = recorded_weights(weights, partition_id(base, seed), run.adapter_sha256)
    fine_tuned = restore_method(base, run.config, text_features, logit_scale, seed, state)
    if not entry.is_wise:
        return fine_tuned
    zero_shot = zero_shot_model(text_features, logit_scale, run.config["device"])
    return interpolate(fine_tuned, zero_shot, float(run.alpha))


RETRAIN = "rerun `kedro run --pipeline=train` (it writes both)"


def recorded_weights(weights: Weights, partition: str, digest: str) -> Mapping[str, Tensor]:
    """The state dict of ``partition``, refused unless its digest is the one ``train_summary``
    recorded (``digest``) when it trained it."""
    if not digest:
        raise CorruptFileError(
            f"train_summary.json records no adapter_sha256 for {partition!r} (an older "
            f"version wrote it), so its weights cannot be checked; {RETRAIN}"
        )
    state = weights(partition)
    actual = tensors_digest(dict(state))
    if actual != digest:
        raise CorruptFileError(
            f"adapter weights {partition!r} (digest {actual[:12]}...) are not the ones "
            f"train_summary.json records ({digest[:12]}...): the file changed after training; "
            f"{RETRAIN}"
        )
    return state
