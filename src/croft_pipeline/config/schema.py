"""The project's parameters as one typed model, checked when a run starts (before any node
computes or writes; ``hooks.ParameterCheckHook``).

Each package declares the blocks it owns (``data.params``, ``clip.params``, ``methods.params``,
``ood.params``, ``publishing.params``); :class:`ProjectParams` composes them and adds the checks
that span blocks (a gate names a reported metric, the registered method is evaluated, ...).
A broken value is a :class:`~croft_pipeline.config.rules.ParameterError` naming the full key,
the rule and the value (``train.method_params.linear_probe.lr must be > 0, got -0.5``). What
depends on the data (the KNN bank size) is checked by the first node that sees it
(``pipelines.train.nodes.fit_methods``). The checks that ask this machine or a library (a
device, a CLIP model name, a gate's shape) import torch, open_clip or the evaluation code
when they run; importing this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from croft_pipeline.clip.params import ClipParams, EmbedParams, PretrainParams
from croft_pipeline.config.keys import Keyed, check_keys
from croft_pipeline.config.rules import ParameterError, at_least, one_of, parameter_error
from croft_pipeline.data.params import IngestParams
from croft_pipeline.methods.params import METHOD_PARAMS, Params, TrainParams, trains
from croft_pipeline.ood.params import SCORE_PARAMS, CalibrateParams, EvaluateParams
from croft_pipeline.publishing.params import GatesParams

WISE_SUFFIX = "+wise"  # methods.wise.wise_name (torch-free here)


class ProjectParams(Params):
    """Every parameter of a run (``kedro run`` resolves them all)."""

    seeds: Annotated[list[Annotated[int, at_least(0)]], Field(min_length=1)]
    ingest: IngestParams
    clip: ClipParams
    embed: EmbedParams
    pretrain: PretrainParams
    train: TrainParams
    calibrate: CalibrateParams
    evaluate: EvaluateParams

    @model_validator(mode="after")
    def _across_blocks(self) -> ProjectParams:
        if len(set(self.seeds)) != len(self.seeds):
            raise ParameterError("seeds", "not repeat a seed", self.seeds)
        _machine_and_libraries(self)
        _scores_named(self.calibrate, self.evaluate)
        register, methods = self.evaluate.registration, evaluated_methods(self.train)
        one_of(methods).check("evaluate.register.method", register.method)
        if register.seed is not None:
            one_of(self.seeds).check("evaluate.register.seed", register.seed)
        check_gate_config(self.evaluate, methods)
        return self


# settings that moved: old dotted key -> where it is now (the unknown-key message names it)
MOVED = {"train.calibration": "calibrate"}

# the mappings whose keys name a model each (config.keys walks them for unknown keys)
KEYED = {
    (TrainParams, "method_params"): Keyed(METHOD_PARAMS),
    (TrainParams, "grids"): Keyed(METHOD_PARAMS, names_only=True),
    (EvaluateParams, "scores"): Keyed(SCORE_PARAMS),
}


def check_known_keys(params: Mapping[str, Any], files: Mapping[str, Any] | None = None) -> None:
    """Every key of ``params`` is one :class:`ProjectParams` declares, else a
    :class:`~croft_pipeline.config.keys.UnknownKeysError` naming them all (each with the
    closest declared key, and the ``files`` that set it: label -> the parameters written there)."""
    check_keys(params, ProjectParams, KEYED, files, MOVED)


def check_parameters(params: Mapping[str, Any]) -> ProjectParams:
    """``params`` as the typed project model: first every key a declared one
    (:func:`check_known_keys`), then every value, the first broken one as a
    :class:`ParameterError` (``RayMissingError`` when a runner needs Ray and it is missing)."""
    check_known_keys(params)
    try:
        return ProjectParams.model_validate(dict(params))
    except ValidationError as error:
        raise parameter_error(error) from None


def evaluated_methods(train: TrainParams) -> list[str]:
    """The methods evaluation reports: ``train.methods`` and the WiSE-FT point of each trained
    one (when ``train.wise.alphas`` is set)."""
    names = list(train.methods)
    if train.wise.alphas:
        names += [f"{name}{WISE_SUFFIX}" for name in train.methods if trains(name)]
    return names


def _machine_and_libraries(params: ProjectParams) -> None:
    """The devices this machine must have, the CLIP model open_clip must know, Ray installed
    when a runner is ``ray``, the served model's input policy (its keys: else registration, the
    run's last node, would refuse it)."""
    from croft_pipeline.clip.backend import check_model_name
    from croft_pipeline.common.compute import resolve_device
    from croft_pipeline.distributed import require_ray
    from croft_pipeline.serving.inputs import InputPolicy

    devices = {
        "clip.device": params.clip.device,
        "train.device": params.train.device,
        "evaluate.register.device": params.evaluate.registration.device,
    }
    for key, device in devices.items():
        _wrapped(key, device, resolve_device)
    _wrapped("clip.model_name", params.clip.model_name, check_model_name)
    served = params.evaluate.registration.served_config
    _wrapped("evaluate.register.model_config", served, InputPolicy.from_model_config)
    for block in ("embed", "train"):
        if getattr(params, block).runner == "ray":
            require_ray(f"{block}.runner")


def _scores_named(calibrate: CalibrateParams, evaluate: EvaluateParams) -> None:
    """Every score a block names is one evaluation computes; the paper reference a shift."""
    from croft_pipeline.ood.calibration import check_calibrated_score

    scores = sorted(evaluate.scores)
    check_calibrated_score(calibrate.score, evaluate.scores)  # evaluation applies the same numbers
    one_of(scores).check("evaluate.paper.score", evaluate.paper.score)
    one_of(sorted(evaluate.splits)).check("evaluate.paper.reference", evaluate.paper.reference)
    one_of(scores).check("evaluate.comparisons.score", evaluate.comparisons.score)
    one_of(scores).check("evaluate.report.plot_score", evaluate.report.plot_score)


def check_gate_config(evaluate: EvaluateParams, methods: list[str]) -> None:
    """Each gate's shape (the rules ``serving.gates`` applies, run on empty tables), then that it
    names a method, shift and metric the evaluation reports (else it can never pass)."""
    import pandas as pd

    from croft_pipeline.ood.comparisons import COMPARISON_COLUMNS, ComparisonConfig
    from croft_pipeline.ood.evaluation import evaluated_metrics
    from croft_pipeline.publishing.gates import check_gates

    summary = pd.DataFrame(columns=["method", "shift", "metric", "mean", "std"])
    compared = pd.DataFrame(columns=COMPARISON_COLUMNS)
    comparisons = evaluate.comparisons.model_dump(exclude_none=True)
    interval_pairs = set(
        _wrapped("evaluate.comparisons", comparisons, ComparisonConfig.from_params).metrics()
    )
    reported = evaluated_metrics(sorted(evaluate.scores))
    method = evaluate.registration.method
    gates: GatesParams = evaluate.gates
    for i, gate in enumerate(gates.comparisons):
        key = f"evaluate.gates.comparisons[{i}]"
        given = gate.model_dump(exclude_unset=True)
        alone = {"require_finite": False, "comparisons": [given]}
        _wrapped(key, alone, lambda config: check_gates(summary, compared, config, method))
        if gate.baseline is not None:
            one_of(methods).check(f"{key}.baseline", gate.baseline)
        pair = (gate.shift, gate.metric)
        known = interval_pairs if gate.interval else reported
        if pair not in known:
            shifts = sorted({shift for shift, _ in known})
            one_of(shifts).check(f"{key}.shift", gate.shift)
            metrics = sorted(metric for shift, metric in known if shift == gate.shift)
            source = "evaluate.comparisons compares" if gate.interval else "evaluate reports"
            rule = f"be one of {metrics} (what {source} on shift {gate.shift!r})"
            raise ParameterError(f"{key}.metric", rule, gate.metric)


def _wrapped(key: str, value: Any, check: Callable[[Any], Any]) -> Any:
    """``check(value)``; its error becomes a :class:`ParameterError` naming ``key``."""
    try:
        return check(value)
    except ParameterError:
        raise
    except (KeyError, ValueError, TypeError) as error:
        reason = error.args[0] if error.args else type(error).__name__
        raise ParameterError(key, f"be valid ({reason})", value) from None
