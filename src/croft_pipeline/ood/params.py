"""The ``evaluate`` parameter block: the OOD scores and their parameters, the protocols, the
paired comparisons and the report (registration and gates: :mod:`croft_pipeline.publishing.params`).
Torch-free."""

from __future__ import annotations

import itertools
from typing import Annotated, Any

from pydantic import Field, field_validator

from croft_pipeline.config.rules import (
    LEVEL,
    POSITIVE,
    SHARE,
    TEXT,
    ParameterError,
    at_least,
    one_of,
)
from croft_pipeline.data.splits import SPLITS
from croft_pipeline.methods.params import Params
from croft_pipeline.publishing.params import GatesParams, RegisterParams

TPR = SHARE  # a target true-positive rate: in (0, 1]
SPLIT_NAME = one_of(SPLITS)
KNN_K = at_least(1)


class CalibrateParams(Params):
    """The ``calibrate`` block: the deploy threshold's score and the share of ID validation it
    keeps (its own pipeline: a change reruns calibrate and evaluate, not the fits)."""

    score: Annotated[str, TEXT]  # one of evaluate.scores (checked by the project model)
    tpr: Annotated[float, TPR]


class TemperatureScore(Params):
    temperature: Annotated[float, POSITIVE] = 1.0


class NoParameters(Params):
    pass


class KnnScore(Params):
    k: Annotated[int, KNN_K] = 1  # the k-th nearest ID training feature (<= the bank size)


class NegLabelScore(Params):
    share: Annotated[float, SHARE] = 0.15  # of each part of speech's mined candidates kept
    groups: Annotated[int, at_least(1)] = 100
    temperature: Annotated[float, POSITIVE] = 0.01  # on cosine similarities
    seed: Annotated[int, at_least(0)] = 0  # of the grouping's permutation


def score_grid(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point of a score's parameters: a list value is a grid axis (key order), a scalar
    is fixed; ``{}`` is one point (ood.evaluation chooses a grid's point on validation data)."""
    axes = [value if isinstance(value, list) else [value] for value in params.values()]
    return [dict(zip(params, point, strict=True)) for point in itertools.product(*axes)]


SCORE_PARAMS: dict[str, type[Params]] = {
    "energy": TemperatureScore,
    "msp": TemperatureScore,
    "max_logit": NoParameters,
    "mcm": TemperatureScore,
    "knn": KnnScore,
    "neglabel": NegLabelScore,
}  # the parameters of every score of croft_pipeline.ood.scores.SCORES


class PaperParams(Params):
    score: Annotated[str, TEXT]  # one of evaluate.scores
    reference: Annotated[str, TEXT]  # the shift whose correct samples set the threshold


class ComparisonsParams(Params):
    score: Annotated[str, TEXT] = "energy"  # one of evaluate.scores
    draws: Annotated[int, at_least(1)] = 2000
    level: Annotated[float, LEVEL] = 0.95
    seed: Annotated[int, at_least(0)] = 0
    accuracy_shifts: list[str] | None = None  # None: ood.comparisons' defaults
    detection_shifts: list[str] | None = None


class ReportParams(Params):
    title: Annotated[str, TEXT]
    plot_score: Annotated[str, TEXT]  # one of evaluate.scores


class EvaluateParams(Params):
    tpr: Annotated[float, TPR] = 0.95
    splits: dict[str, Annotated[str, SPLIT_NAME]]  # shift type -> split of the predictions
    scores: dict[str, dict[str, Any] | None]  # score name -> its parameters
    knn_bank_split: Annotated[str, SPLIT_NAME] = "train"
    # where a score parameter given as a list (a grid) is chosen: ID validation vs OOD validation
    validation: dict[str, Annotated[str, SPLIT_NAME]] = {"id": "val", "openset": "val_openset"}
    paper: PaperParams
    comparisons: ComparisonsParams = ComparisonsParams()
    report: ReportParams
    registration: RegisterParams = Field(alias="register")  # BaseModel.register is taken
    gates: GatesParams = GatesParams()

    @field_validator("scores")
    @classmethod
    def _scores(cls, scores: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
        for name, values in scores.items():
            key = f"evaluate.scores.{name}"
            if name not in SCORE_PARAMS:
                raise ParameterError(
                    key,
                    f"be valid (unknown OOD score {name!r}; known: {sorted(SCORE_PARAMS)})",
                    values,
                )
            grid = score_grid(dict(values or {}))
            if not grid:
                raise ParameterError(
                    key, "give every grid axis (a list) at least one value", values
                )
            for point in grid:
                SCORE_PARAMS[name].checked(point, key)
        return {name: dict(values or {}) for name, values in scores.items()}
