"""Every parameter block checked when a run starts, before any node computes or writes.

One function per block; each raises a :class:`~croft_pipeline.rules.ParameterError` naming the
full key, the rule and the value (``train.common.lr must be > 0, got -0.5``). The rules are the
ones the consuming code applies (method configurations, score parameters, gates, devices);
this module only walks the parameters and names the keys. What depends on the data (the KNN
bank size) is checked by the first node that sees it (``pipelines.train.nodes.fit_methods``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import pandas as pd

from croft_pipeline.clip.backend import PRECISION, TEMPLATES, check_model_name
from croft_pipeline.data.discovery import DATASET_SOURCES, LAYOUT_DEPTH
from croft_pipeline.data.manifest import SOURCE_ROLES
from croft_pipeline.data.splits import SPLITS
from croft_pipeline.distributed import require_ray
from croft_pipeline.distributed.embed import chunk_runner
from croft_pipeline.methods.base import METHODS, config_key_errors
from croft_pipeline.methods.feature_sets import config_key, config_layers, method_config
from croft_pipeline.methods.tuning import method_grids
from croft_pipeline.methods.wise import ALPHA, wise_name
from croft_pipeline.ood.calibration import check_calibrated_score
from croft_pipeline.ood.comparisons import COMPARISON_COLUMNS, ComparisonConfig
from croft_pipeline.ood.evaluation import evaluated_metrics
from croft_pipeline.ood.metrics import TPR
from croft_pipeline.ood.scores import PARAMETER_RULES, score_parameters
from croft_pipeline.rules import (
    BOOLEAN,
    NON_NEGATIVE,
    POSITIVE,
    SHARE,
    TEXT,
    UNIT,
    ParameterError,
    Rule,
    at_least,
    interval,
    one_of,
    optional,
)
from croft_pipeline.runtime import THREAD_COUNT, Runner, resolve_device
from croft_pipeline.serving.gates import check_gates

SPLIT_NAME = one_of(SPLITS)
COUNT = optional(at_least(1))
LEVEL = Rule("be in (0, 1)", lambda v: 0 < v < 1)


def check_parameters(params: Mapping[str, Any]) -> None:
    """Every block of a run's parameters (``kedro run`` resolves them all)."""
    seeds = params.get("seeds")
    if not (isinstance(seeds, list) and seeds and all(at_least(0).holds(s) for s in seeds)):
        raise ParameterError("seeds", "be a non-empty list of integers >= 0", seeds)
    if len(set(seeds)) != len(seeds):
        raise ParameterError("seeds", "not repeat a seed", seeds)
    for block, check in BLOCKS.items():
        check(_block(params, block, ""), params)


def check_ingest(ingest: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    _rules("ingest", ingest, {"source": one_of(DATASET_SOURCES)})
    roots = _block(ingest, "roots", "ingest")
    for name, path in roots.items():
        TEXT.check(f"ingest.roots.{name}", path)
    for i, source in enumerate(ingest.get("sources") or []):
        key = f"ingest.sources[{i}]"
        _rules(key, source, {"root": one_of(sorted(roots)), "role": one_of(SOURCE_ROLES)})
        _rules(key, source, {"layout": one_of(sorted(LAYOUT_DEPTH))})
    dataset = ingest.get("dataset") or {}
    _rules("ingest.dataset", dataset, {"heldout_domain": TEXT})
    if dataset.get("group_pattern") is not None:
        _group_pattern(dataset["group_pattern"])
    splits_rules = {"val_fraction": UNIT, "test_fraction": UNIT, "shots": COUNT}
    _rules("ingest.splits", ingest.get("splits"), splits_rules)
    _rules("ingest.splits", ingest.get("splits"), {"val_per_class": COUNT})
    _rules("ingest.splits", ingest.get("splits"), {"openset_max_per_class": COUNT})
    validation = ingest.get("validation") or {}
    _rules("ingest.validation", validation, {"min_side": at_least(1), "max_side": at_least(1)})
    if validation.get("min_side", 0) > validation.get("max_side", float("inf")):
        raise ParameterError("ingest.validation.min_side", "be <= max_side", validation["min_side"])
    _rules("ingest.decode", ingest.get("decode"), {"max_pixels": at_least(1)})
    emojishift = {"image_size": at_least(1), "glyph_share": SHARE, "supersample": at_least(1)}
    _rules("ingest.emojishift", ingest.get("emojishift"), emojishift)
    _rules("ingest.emojishift", ingest.get("emojishift"), {"pretrain_fraction": UNIT})


def _group_pattern(pattern: Any) -> None:
    key = "ingest.dataset.group_pattern"
    try:
        compiled = re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ParameterError(key, f"be a regular expression ({error})", pattern) from None
    if "group" not in compiled.groupindex:
        raise ParameterError(key, "have a named group (?P<group>...)", pattern)


def check_clip(clip: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    _wrapped("clip.model_name", clip.get("model_name"), check_model_name)
    rules = {"pretrained": optional(TEXT), "precision": PRECISION, "num_threads": THREAD_COUNT}
    _rules("clip", clip, {**rules, "templates": TEMPLATES})
    _device("clip.device", clip.get("device"))


def check_embed(embed: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    counts = {key: at_least(1) for key in ("n_views", "batch_size", "chunk_rows")}
    _rules("embed", embed, {**counts, "num_workers": at_least(0), "cache_dir": TEXT})
    augment = {"scale": interval(SHARE), "ratio": interval(POSITIVE), "flip": BOOLEAN}
    _rules("embed.augment", embed.get("augment"), {**augment, "seed": at_least(0)})
    chunk_runner(embed)  # embed.runner and embed.ray; Ray installed when it is the runner


def check_pretrain(pretrain: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    counts = {
        key: at_least(1) for key in ("steps", "batch_size", "log_every", "num_threads", "views")
    }
    flags = {key: BOOLEAN for key in ("force", "flip", "lock_text_tower", "bf16")}
    rules = {"lr": POSITIVE, "weight_decay": NON_NEGATIVE, "warmup_steps": at_least(0)}
    rules |= {"crop_scale": interval(SHARE), "grayscale_p": UNIT, "seed": at_least(0)}
    paths = {"checkpoint": TEXT, "feature_cache": TEXT}
    _rules("pretrain", pretrain, {**counts, **flags, **rules, **paths})
    zero_shot = pretrain.get("zero_shot") or {}
    _rules("pretrain.zero_shot", zero_shot, {"enabled": BOOLEAN})
    for i, split in enumerate(zero_shot.get("splits") or []):
        SPLIT_NAME.check(f"pretrain.zero_shot.splits[{i}]", split)


def check_train(train: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """The method configurations at every grid point, with the rules each method applies."""
    _device("train.device", train.get("device"))
    _rules("train", train, {"num_threads": THREAD_COUNT, "workers": THREAD_COUNT})
    if Runner.from_params(train, "train").kind == "ray":
        require_ray("train.runner")
    names = train.get("methods")
    if not (isinstance(names, list) and names):
        raise ParameterError("train.methods", "be a non-empty list of method names", names)
    for i, name in enumerate(names):
        one_of(sorted(METHODS)).check(f"train.methods[{i}]", name)
    for name, grid in (train.get("grids") or {}).items():
        for key, values in (grid or {}).items():
            if not (isinstance(values, list) and values):
                raise ParameterError(f"train.grids.{name}.{key}", "be a non-empty list", values)
    grids = method_grids(train, names)
    for name in names:
        _method(train, name, grids[name])
    for i, alpha in enumerate((train.get("wise") or {}).get("alphas") or []):
        ALPHA.check(f"train.wise.alphas[{i}]", alpha)
    calibration = _block(train, "calibration", "train")
    TPR.check("train.calibration.tpr", calibration.get("tpr"))
    check_calibrated_score(calibration.get("score"), _evaluated_scores(params))


def _method(train: Mapping[str, Any], name: str, grid: Mapping[str, list]) -> None:
    """One method's configuration: exactly its keys, every value (and grid value) allowed."""
    cls, config = METHODS[name], method_config(train, name)
    missing, unknown = config_key_errors({**config, **grid}, cls.config_keys)
    takes = f"{name} takes exactly {sorted(cls.config_keys)}"
    for key in unknown:
        where = f"train.grids.{name}.{key}" if key in grid else config_key(train, name, key)
        raise ParameterError(where, f"not be set: {takes}", (config | grid)[key])
    for key in missing:
        layers = ", ".join(prefix for prefix, _ in config_layers(train, name)[1:-1])
        where = f" (or in {layers})" if layers else ""
        raise ParameterError(f"train.method_params.{name}.{key}", f"be set{where}: {takes}", None)
    for key, rule in cls.config_rules.items():
        if key in config:
            rule.check(config_key(train, name, key), config[key])
        for i, value in enumerate(grid.get(key, [])):
            rule.check(f"train.grids.{name}.{key}[{i}]", value)


def check_evaluate(evaluate: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    TPR.check("evaluate.tpr", evaluate.get("tpr"))
    for shift, split in (evaluate.get("splits") or {}).items():
        SPLIT_NAME.check(f"evaluate.splits.{shift}", split)
    _rules("evaluate", evaluate, {"knn_bank_split": SPLIT_NAME})
    scores = _evaluated_scores(params)
    for name, values in scores.items():
        resolved = _wrapped(f"evaluate.scores.{name}", values, partial(score_parameters, name))
        for key, value in resolved.items():
            PARAMETER_RULES[key].check(f"evaluate.scores.{name}.{key}", value)
    score = one_of(sorted(scores))
    paper = evaluate.get("paper") or {}
    shifts = sorted(evaluate.get("splits") or {})
    _rules("evaluate.paper", paper, {"score": score, "reference": one_of(shifts)})
    comparisons = evaluate.get("comparisons") or {}
    _wrapped("evaluate.comparisons", comparisons, ComparisonConfig.from_params)
    rules = {"score": score, "draws": at_least(1), "level": LEVEL, "seed": at_least(0)}
    _rules("evaluate.comparisons", comparisons, rules)
    report = {"plot_score": score, "histogram_bins": at_least(1), "title": TEXT}
    _rules("evaluate.report", evaluate.get("report"), report)
    register = _block(evaluate, "register", "evaluate")
    methods = evaluated_methods(params["train"])
    names = {"model_name": TEXT, "candidate_alias": TEXT, "champion_alias": TEXT}
    rules = {"enabled": BOOLEAN, "method": one_of(methods), **names}
    _rules("evaluate.register", register, {**rules, "seed": optional(one_of(params["seeds"]))})
    _device("evaluate.register.device", register.get("device"))
    check_gate_config(_block(evaluate, "gates", "evaluate"), register["method"], evaluate, methods)


def evaluated_methods(train: Mapping[str, Any]) -> list[str]:
    """The methods evaluation reports: ``train.methods`` and the WiSE-FT point of each trained
    one (when ``train.wise.alphas`` is set)."""
    names = list(train["methods"])
    if (train.get("wise") or {}).get("alphas"):
        names += [wise_name(name) for name in train["methods"] if METHODS[name].trains]
    return names


def check_gate_config(
    gates: Mapping[str, Any], method: str, evaluate: Mapping[str, Any], methods: list[str]
) -> None:
    """Each gate's shape (the rules ``serving.gates`` applies, run on empty tables), then that it
    names a method, shift and metric the evaluation reports (else it can never pass)."""
    _rules("evaluate.gates", gates, {"require_finite": BOOLEAN})
    summary = pd.DataFrame(columns=["method", "shift", "metric", "mean", "std"])
    compared = pd.DataFrame(columns=COMPARISON_COLUMNS)
    interval_pairs = set(ComparisonConfig.from_params(evaluate.get("comparisons")).metrics())
    reported = evaluated_metrics(sorted(_block(evaluate, "scores", "evaluate")))
    for i, gate in enumerate(gates.get("comparisons") or []):
        key = f"evaluate.gates.comparisons[{i}]"
        alone = {"require_finite": False, "comparisons": [gate]}
        _wrapped(key, alone, lambda config: check_gates(summary, compared, config, method))
        if "baseline" in gate:
            one_of(methods).check(f"{key}.baseline", gate["baseline"])
        pair = (gate["shift"], gate["metric"])
        known = interval_pairs if gate.get("interval") else reported
        if pair not in known:
            shifts = sorted({shift for shift, _ in known})
            one_of(shifts).check(f"{key}.shift", gate["shift"])
            metrics = sorted(metric for shift, metric in known if shift == gate["shift"])
            source = "evaluate.comparisons compares" if gate.get("interval") else "evaluate reports"
            rule = f"be one of {metrics} (what {source} on shift {gate['shift']!r})"
            raise ParameterError(f"{key}.metric", rule, gate["metric"])


BLOCKS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], None]] = {
    "ingest": check_ingest,
    "clip": check_clip,
    "embed": check_embed,
    "pretrain": check_pretrain,
    "train": check_train,
    "evaluate": check_evaluate,
}


def _evaluated_scores(params: Mapping[str, Any]) -> dict[str, Any]:
    scores = _block(_block(params, "evaluate", ""), "scores", "evaluate")
    return {name: dict(values or {}) for name, values in scores.items()}


def _block(params: Mapping[str, Any] | None, name: str, parent: str) -> Mapping[str, Any]:
    key = f"{parent}.{name}" if parent else name
    value = (params or {}).get(name)
    if not isinstance(value, Mapping):
        raise ParameterError(key, "be a mapping of parameters", value)
    return value


def _rules(prefix: str, block: Mapping[str, Any] | None, rules: Mapping[str, Rule]) -> None:
    """Each rule on its key of ``block``, when the key is set (code gives defaults otherwise)."""
    for key, rule in rules.items():
        if block and key in block:
            rule.check(f"{prefix}.{key}", block[key])


def _wrapped(key: str, value: Any, check: Callable[[Any], Any]) -> Any:
    """``check(value)``; its error becomes a :class:`ParameterError` naming ``key``."""
    try:
        return check(value)
    except ParameterError:
        raise
    except (KeyError, ValueError, TypeError) as error:
        reason = error.args[0] if error.args else type(error).__name__
        raise ParameterError(key, f"be valid ({reason})", value) from None


def _device(key: str, device: Any) -> None:
    if device is not None:
        _wrapped(key, device, resolve_device)
