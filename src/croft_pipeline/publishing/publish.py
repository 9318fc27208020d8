"""Assemble the served model of one trained method and seed, register it, move the aliases."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from croft_pipeline.clip.backend import local_checkpoint
from croft_pipeline.common.features import FeatureTable
from croft_pipeline.common.files import sha256_file
from croft_pipeline.methods import Method
from croft_pipeline.methods.fitted import fitted_model
from croft_pipeline.methods.train_summary import SeedFit, SeedWise, TrainSummary
from croft_pipeline.ood.scores import stacked
from croft_pipeline.publishing.gates import check_gates, gated_metrics, gates_outcome
from croft_pipeline.publishing.registry import alias_version, registration
from croft_pipeline.publishing.served_check import check_served, served_sample
from croft_pipeline.serving.bundle import write_bundle
from croft_pipeline.tracking import run_name
from croft_pipeline.tracking.provenance import Provenance


def trained_runs(train_summary: TrainSummary, method: str) -> dict[int, SeedFit | SeedWise]:
    """``{seed: run}`` of ``method`` in ``train_summary.methods`` (docs/architecture.md)."""
    methods = train_summary.methods
    if method not in methods:
        raise KeyError(
            f"evaluate.register.method {method!r} was not trained; train_summary has {sorted(methods)}"
        )
    return methods[method].seeds


def choose_seed(runs: Mapping[int, SeedFit | SeedWise], seed: int | None) -> int:
    """``seed`` if given, else the seed with the best ID validation accuracy (ties: smallest)."""
    if seed is not None:
        if seed not in runs:
            raise KeyError(f"evaluate.register.seed {seed} was not trained; seeds: {sorted(runs)}")
        return seed

    def accuracy(s: int) -> float:
        value = runs[s].best_val_accuracy
        return float("-inf") if value is None else float(value)

    return min(runs, key=lambda s: (-accuracy(s), s))


def served_method(
    train_summary: TrainSummary,
    method: str,
    seed: int,
    weights: Callable[[str], Mapping[str, torch.Tensor]],
    text_features: torch.Tensor,
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(method class, configuration, state dict) the bundle serves for a summary entry.

    A WiSE-FT point is its fitted model as evaluation rebuilt it: zero-shot CLIP at α = 0, the
    base method at α = 1, the base class with interpolated weights in between; a point that
    blends two models' outputs cannot be served as one method.
    """
    entry = train_summary.methods[method]
    run = entry.seeds[seed]
    model = fitted_model(
        method, entry, seed, weights, text_features, float(train_summary.logit_scale)
    )
    if not isinstance(model, Method):
        raise ValueError(
            f"evaluate.register.method {method!r} blends two models' outputs (WiSE-FT in output "
            f"space, alpha {run.alpha}); register {entry.base!r} or a weight-space method"
        )
    config = run.config if model.name != "zero_shot" else {"device": run.config["device"]}
    return model.name, config, model.state_dict()


def knn_bank(predictions: pd.DataFrame, method: str, seed: int, split: str) -> torch.Tensor:
    """The KNN bank evaluation scores ``method`` at ``seed`` against: the ``embedding`` of its
    ``split`` rows in the predictions table."""
    rows = predictions[
        (predictions["method"] == method)
        & (predictions["seed"] == int(seed))
        & (predictions["split"] == split)
    ]
    where = f"KNN bank ({split!r} predictions of {method}, seed {seed}; evaluate.knn_bank_split)"
    if rows.empty:
        raise ValueError(f"{where}: no rows")
    return torch.from_numpy(stacked(rows["embedding"], where)).float()


def interval_gate_pairs(register: Mapping[str, Any], gates: Mapping[str, Any]):
    """(registered method, baseline) of every gate that compares with an interval."""
    return [
        (register["method"], gate["baseline"])
        for gate in gates.get("comparisons", [])
        if gate.get("interval") and "baseline" in gate
    ]


def publish_model(
    train_summary: TrainSummary,
    calibration: Mapping[str, Any],
    text_features: FeatureTable,
    clip_model_spec: Mapping[str, Any],
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    evaluation_scores: pd.DataFrame,
    image_features_center: FeatureTable,
    project_dir: str | Path,
    precision: str,
    weights: Callable[[str], Mapping[str, torch.Tensor]],
    register: Mapping[str, Any],
    gates: Mapping[str, Any],
    record: Callable[[dict[str, Any]], None],
    predictions: pd.DataFrame | None = None,
    knn: Mapping[str, Any] | None = None,
    knn_bank_split: str = "train",
    provenance: Provenance | None = None,
) -> dict[str, Any]:
    """Bundle, log and register ``register.method`` at its seed; ``champion`` moves only if every
    gate passes. The version is tagged with ``provenance`` and its gated metrics, and described in
    one line. Before it exists, the logged model predicts a sample of ``evaluation_scores``' rows
    from their ``image_features_center`` embeddings, and must match what evaluation scored
    (:mod:`publishing.served_check`). ``record(registration)`` runs last: if it fails, the registry
    is unchanged.

    With ``knn`` (the ``evaluate.scores.knn`` parameters) the model serves the KNN score too,
    its bank taken from ``predictions`` (:func:`knn_bank`)."""
    method = register["method"]
    runs = trained_runs(train_summary, method)
    seed = choose_seed(runs, register.get("seed"))
    calibrated = calibration[method][str(seed)]  # calibration.json: seeds keyed by text
    class_names = list(train_summary.id_classes)
    if list(text_features.keys) != class_names:
        raise ValueError(
            f"text_features keys {text_features.keys} differ from train_summary id_classes {class_names}"
        )
    served_name, served_config, state = served_method(
        train_summary, method, seed, weights, text_features.features[:, 0]
    )
    checkpoint = local_checkpoint(
        clip_model_spec["model_name"], clip_model_spec.get("pretrained"), project_dir
    )
    expected = clip_model_spec.get("checkpoint_sha256")
    if checkpoint is not None and expected and sha256_file(checkpoint) != expected:
        raise ValueError(
            f"CLIP checkpoint {checkpoint} changed since clip_model_spec was written "
            f"(sha256 {expected[:12]}... expected): re-run the pretrain, embed and train pipelines"
        )
    config = {
        "model_name": clip_model_spec["model_name"],
        "pretrained": clip_model_spec.get("pretrained"),
        "precision": precision,
        "method": served_name,
        "method_config": served_config,
        "seed": seed,
        "logit_scale": float(train_summary.logit_scale),
        "class_names": class_names,
        "threshold": float(calibrated["threshold"]),
        "score": calibrated["score"],
        "score_params": dict(calibrated["params"]),
        "device": register.get("device", "auto"),
    }
    results = check_gates(summary, comparisons, gates, method)
    passed = all(result.passed for result in results)
    aliases = [register["candidate_alias"]] + ([register["champion_alias"]] if passed else [])
    tags = {"method": method, "seed": str(seed), "gates_passed": str(passed).lower()}
    metrics = gated_metrics(summary, gates, method)
    model_input, expected = served_sample(
        evaluation_scores, image_features_center, method, seed, calibrated
    )
    with tempfile.TemporaryDirectory() as tmp:
        bank = None if knn is None else knn_bank(predictions, method, seed, knn_bank_split)
        artifacts = write_bundle(
            tmp, config, text_features.features[:, 0], state, checkpoint, bank, knn
        )
        with registration(
            artifacts,
            register["model_name"],
            aliases,
            tags,
            register.get("model_config"),
            version_tags(tags, metrics, provenance),
            version_description(
                method,
                seed,
                aliases,
                metrics,
                provenance,
                gates_outcome(results, register["champion_alias"]),
            ),
            check=lambda model_uri: check_served(model_uri, model_input, expected),
            run_name=run_name("register", method, seed),
        ) as registered:
            document = {
                **registered,
                "method": method,
                "seed": seed,
                "threshold": config["threshold"],
                "score": config["score"],
                "score_params": config["score_params"],
                "clip_checkpoint_bundled": checkpoint is not None,
                "gates_passed": passed,
                "gates": [result.as_dict() for result in results],
                "champion_version": alias_version(
                    register["model_name"], register["champion_alias"]
                ),
            }
            record(document)
    return document


def held_registration(
    train_summary: TrainSummary,
    summary: pd.DataFrame,
    comparisons: pd.DataFrame,
    register: Mapping[str, Any],
    gates: Mapping[str, Any],
    held: str,
) -> dict[str, Any]:
    """The record of a run that registers nothing (``held``: why; ``publishing.experiments``):
    its gates, what they would have done, and the versions the aliases stay at."""
    method, name = register["method"], register["model_name"]
    results = check_gates(summary, comparisons, gates, method)
    return {
        "registered": False,
        "reason": held,
        "model_name": name,
        "method": method,
        "seed": choose_seed(trained_runs(train_summary, method), register.get("seed")),
        "aliases": [],
        "gates_passed": all(result.passed for result in results),
        "gates": [result.as_dict() for result in results],
        "alias_versions": {  # as they stay
            alias: alias_version(name, alias)
            for alias in (register["candidate_alias"], register["champion_alias"])
        },
    }


def version_tags(
    tags: Mapping[str, str], metrics: Mapping[str, float], provenance: Provenance | None
) -> dict[str, str]:
    """A registered version's tags: what was served, its gated metrics, its provenance."""
    return {
        **{key: str(value) for key, value in tags.items()},
        **{f"croft.metric.{name}": f"{value:.6g}" for name, value in metrics.items()},
        **(provenance.tags() if provenance is not None else {}),
    }


def version_description(
    method: str,
    seed: int,
    aliases: list[str],
    metrics: Mapping[str, float],
    provenance: Provenance | None,
    outcome: str = "",
) -> str:
    """``croft_clean seed 1 (candidate, champion): covariate/accuracy 0.612; all 3 gates passed:
    champion moves to this run's version; git commit ..., Kedro env ...``."""
    scores = ", ".join(f"{name} {value:.3f}" for name, value in metrics.items())
    text = f"{method} seed {seed} ({', '.join(aliases)})" + (f": {scores}" if scores else "")
    if outcome:
        text += f"; {outcome}"
    if provenance is not None:
        text += f"; git commit {provenance.commit_text()}, Kedro env {provenance.kedro_env}"
        text += f", {provenance.experiment()}" if provenance.experiment() else ""
    return text
