"""Thin Kedro nodes of the pretrain pipeline; the logic lives in croft_pipeline.clip."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from croft_pipeline.clip.backend import load_configured_clip
from croft_pipeline.clip.params import ZeroShotCheck
from croft_pipeline.clip.zeroshot import zero_shot_accuracy
from croft_pipeline.common.compute import torch_threads
from croft_pipeline.data.discovery import image_file, resolve_root
from croft_pipeline.pretraining.default_model import (
    emojishift_pretrain_pairs,
    ensure_checkpoint,
    is_project_checkpoint,
    pretrain_config,
)
from croft_pipeline.tracking import metric_logger

ZERO_SHOT_METRIC = "clip_zero_shot_acc"
ZERO_SHOT_SPLITS = ["test_id", "test_covariate"]  # downstream ID images, never seen in pretraining

logger = logging.getLogger(__name__)


def pretrain_clip(
    pretrain_pairs: pd.DataFrame,
    dataset_roots: dict[str, str],
    project_dir: str,
    clip: dict[str, Any],
    pretrain: dict[str, Any],
    ingest: dict[str, Any],
) -> dict[str, Any]:
    """Train the default CLIP into ``pretrain.checkpoint`` (or reuse it); a report as JSON.

    Trains nothing when ``clip.pretrained`` is a hub tag or another checkpoint. A folder dataset
    (no captions) trains it on EmojiShift rendered into ``pretrain.emojishift_roots``.
    """
    feature_cache = _feature_cache(project_dir, pretrain.get("feature_cache"))
    if feature_cache is not None:  # a DVC output of this stage, also when nothing is cached
        feature_cache.mkdir(parents=True, exist_ok=True)
    if not is_project_checkpoint(clip.get("pretrained"), pretrain["checkpoint"], project_dir):
        return {
            "trained": False,
            "reused": False,
            "reason": "clip.pretrained is a hub tag or an external checkpoint",
        }
    pretrain_pairs, dataset_roots, pair_source = _training_pairs(
        pretrain_pairs, dataset_roots, project_dir, pretrain, ingest
    )
    paths = [
        image_file(dataset_roots, project_dir, root, path)
        for root, path in zip(pretrain_pairs["root"], pretrain_pairs["path"], strict=True)
    ]
    with torch_threads(clip.get("num_threads")):
        report = ensure_checkpoint(
            clip["model_name"],
            paths,
            pretrain_pairs["sha256"].tolist(),
            pretrain_pairs["caption"].tolist(),
            Path(project_dir) / pretrain["checkpoint"],
            pretrain_config(pretrain),
            device=clip.get("device"),
            force=bool(pretrain.get("force", False)),
            log=metric_logger("clip_"),
            feature_cache=feature_cache,
        )
    verb = "reused (its stamp matches)" if report["reused"] else "trained"
    logger.info("CLIP checkpoint %s %s", pretrain["checkpoint"], verb)
    return {**report, "pair_source": pair_source}


def _feature_cache(project_dir: str, folder: str | None) -> Path | None:
    return None if not folder else Path(project_dir) / folder


def _training_pairs(
    pretrain_pairs: pd.DataFrame,
    dataset_roots: dict[str, str],
    project_dir: str,
    pretrain: dict[str, Any],
    ingest: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, str], str]:
    """(pairs, the roots they resolve through, where they came from): ingest's when it renders
    EmojiShift, else EmojiShift's rendered into ``pretrain.emojishift_roots`` (no captions)."""
    if ingest["source"] == "emojishift":
        pairs, roots, source = pretrain_pairs, dataset_roots, "ingest"
    else:
        logger.info(
            "ingest.source is %r (no captions): the default CLIP trains on EmojiShift's "
            "pretraining pairs, rendered under pretrain.emojishift_roots",
            ingest["source"],
        )
        roots = {
            k: str(resolve_root(project_dir, v)) for k, v in pretrain["emojishift_roots"].items()
        }
        dirs = {name: Path(path) for name, path in roots.items()}
        pairs = emojishift_pretrain_pairs(ingest["emojishift"], dirs, ingest["decode"])
        source = "pretrain.emojishift_roots"
    if pairs.empty:
        raise ValueError(
            f"no EmojiShift pretraining pairs (from {source}) for the default CLIP: "
            "ingest.emojishift keeps no emoji aside (pretrain_fraction) or renders none"
        )
    return pairs, roots, source


def describe_clip_model(
    pretrain_report: dict[str, Any],
    splits: pd.DataFrame,
    id_classes: list[str],
    dataset_roots: dict[str, str],
    project_dir: str,
    clip: dict[str, Any],
    pretrain: dict[str, Any],
) -> dict[str, Any]:
    """The spec embed and serving load: model name, pretrained, checkpoint sha256, zero-shot accuracy."""
    trained_here = bool(pretrain_report.get("trained") or pretrain_report.get("reused"))
    expected = pretrain_report["checkpoint_sha256"] if trained_here else None
    where = f"the pretrain node wrote to pretrain.checkpoint {pretrain['checkpoint']!r}"
    loaded = load_configured_clip(clip, project_dir, expected, where)
    spec = {**loaded.identity, "trained_here": trained_here}
    if trained_here:  # how the checkpoint was made: its recipe and the precision that ran
        spec.update(
            pretrain_recipe=pretrain_report.get("recipe"),
            pretrain_precision=pretrain_report.get("precision"),
        )
    if ZeroShotCheck.checked(pretrain.get("zero_shot"), "pretrain.zero_shot").enabled:
        rows = _zero_shot_rows(splits, ZERO_SHOT_SPLITS)
        paths = [
            image_file(dataset_roots, project_dir, root, path)
            for root, path in zip(rows["root"], rows["path"], strict=True)
        ]
        with torch_threads(clip.get("num_threads")):
            accuracy = zero_shot_accuracy(
                loaded,
                paths,
                rows["label"].tolist(),
                rows["domain"].tolist(),
                id_classes,
                clip["templates"],
            )
        metric_logger(f"{ZERO_SHOT_METRIC}_")(0, accuracy)
        spec.update(
            zero_shot_accuracy=accuracy,
            zero_shot_images=len(rows),
            chance_accuracy=1 / len(id_classes),
        )
    return spec


def _zero_shot_rows(splits: pd.DataFrame, split_names: list[str]) -> pd.DataFrame:
    """ID images of the given splits, one row per image (the first seed's splits)."""
    first_seed = splits["seed"].min()
    rows = splits[
        (splits["seed"] == first_seed) & splits["split"].isin(split_names) & (splits["label"] >= 0)
    ]
    if rows.empty:
        raise ValueError(f"no ID images in splits {split_names} for the zero-shot check")
    return rows.drop_duplicates("sha256").sort_values(["domain", "sha256"])
