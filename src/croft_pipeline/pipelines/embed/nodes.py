"""Thin Kedro nodes of the embed pipeline; the logic lives in croft_pipeline.clip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from croft_pipeline.clip.backend import LoadedClip, encode_class_prompts, load_configured_clip
from croft_pipeline.clip.embedding import EmbedSettings, ImageRef, embed_views
from croft_pipeline.clip.texts import embed_class_names
from croft_pipeline.clip.views import AUGMENT, CENTER
from croft_pipeline.common.compute import torch_threads
from croft_pipeline.common.features import FeatureTable
from croft_pipeline.data.discovery import image_file
from croft_pipeline.distributed.embed import chunk_runner
from croft_pipeline.ood.neglabel import mined_order
from croft_pipeline.ood.wordnet import files_sha256, read_vocabulary


def embed_center_views(
    splits: pd.DataFrame,
    clip_model_spec: dict[str, Any],
    dataset_roots: dict[str, str],
    project_dir: str,
    clip: dict[str, Any],
    embed: dict[str, Any],
) -> FeatureTable:
    """One center view (V = 1) for every image in ``splits``, keyed by sha256."""
    return _embed(splits, CENTER, 1, clip_model_spec, dataset_roots, project_dir, clip, embed)


def embed_train_views(
    splits: pd.DataFrame,
    clip_model_spec: dict[str, Any],
    dataset_roots: dict[str, str],
    project_dir: str,
    clip: dict[str, Any],
    embed: dict[str, Any],
) -> FeatureTable:
    """``embed.n_views`` seeded augmented views for every image that is ``train`` in any seed."""
    train = splits[splits["split"] == "train"]
    return _embed(
        train,
        AUGMENT,
        int(embed["n_views"]),
        clip_model_spec,
        dataset_roots,
        project_dir,
        clip,
        embed,
    )


def embed_class_prompts(
    id_classes: list[str], clip_model_spec: dict[str, Any], project_dir: str, clip: dict[str, Any]
) -> FeatureTable:
    """Class text features (label order); ``meta["logit_scale"]`` = exp(logit_scale)."""
    loaded = _load(clip_model_spec, project_dir, clip)
    features = encode_class_prompts(loaded, id_classes, clip["templates"])
    meta = {
        **loaded.identity,
        "templates": list(_templates(clip)),
        "logit_scale": loaded.logit_scale,
        "view": "text",
    }
    return FeatureTable(keys=list(id_classes), features=features[:, None, :], meta=meta)


def read_negative_vocabulary(embed: dict[str, Any]) -> pd.DataFrame:
    """NegLabel's candidate negative labels: WordNet nouns and adjectives (ood.wordnet)."""
    settings = embed["negative_labels"]
    return read_vocabulary(
        settings["wordnet_dir"],
        list(settings["parts"]),
        settings.get("max_candidates"),
        int(settings.get("seed", 0)),
    )


def embed_negative_labels(
    negative_vocabulary: pd.DataFrame,
    text_features: FeatureTable,
    clip_model_spec: dict[str, Any],
    project_dir: str,
    clip: dict[str, Any],
    embed: dict[str, Any],
) -> FeatureTable:
    """The candidates' text features, ranked by NegMining against the ID class features (most
    distant first); ``meta["shares"]`` the smallest kept share of each row (ood.neglabel)."""
    settings = embed["negative_labels"]
    loaded = _load(clip_model_spec, project_dir, clip)
    templates = {"noun": _templates(clip), "adj": list(settings["adjective_templates"])}
    cache_root = Path(project_dir) / embed["cache_dir"]
    vocabulary = negative_vocabulary.reset_index(drop=True)
    features = torch.zeros(len(vocabulary), loaded.embed_dim)
    with torch_threads(clip.get("num_threads")):
        for pos, rows in vocabulary.groupby("pos", sort=False).groups.items():
            names = vocabulary.loc[rows, "word"].tolist()
            at = torch.tensor(rows.to_numpy())  # a copy: an Index's array is read-only
            features[at] = embed_class_names(loaded, names, templates[pos], cache_root)
    pos = vocabulary["pos"].tolist()
    quantile = float(settings["quantile"])
    order, shares = mined_order(features, text_features.features[:, 0], pos, quantile)
    keys = [f"{pos[row]}:{vocabulary.at[row, 'word']}" for row in order]
    meta = {
        **loaded.identity,
        "view": "negative_labels",
        "templates": templates,
        "quantile": quantile,
        "id_classes": list(text_features.keys),
        "wordnet_sha256": files_sha256(settings["wordnet_dir"], sorted(set(pos))),
        "shares": shares.tolist(),
    }
    return FeatureTable(keys=keys, features=features[order][:, None, :], meta=meta)


def _embed(rows, kind, n_views, spec, dataset_roots, project_dir, clip, embed) -> FeatureTable:
    loaded = _load(spec, project_dir, clip)
    recipe = loaded.view_recipe(kind, **(_augment_args(embed) if kind == AUGMENT else {}))
    unique = rows.drop_duplicates("sha256")
    images = [
        ImageRef(sha256, image_file(dataset_roots, project_dir, root, path))
        for sha256, root, path in zip(unique["sha256"], unique["root"], unique["path"], strict=True)
    ]
    runner = chunk_runner(embed)
    settings = EmbedSettings(
        batch_size=int(embed.get("batch_size", 128)),
        chunk_rows=int(embed.get("chunk_rows", 512)),
        num_workers=int(embed.get("num_workers", 2)),
    )
    with torch_threads(clip.get("num_threads")):
        keys, features = embed_views(
            loaded,
            images,
            recipe,
            n_views,
            Path(project_dir) / embed["cache_dir"],
            settings,
            runner,
        )
    meta = {
        **loaded.identity,
        "model_key": loaded.model_key,
        "preprocessing": recipe.describe(),
        "recipe_key": recipe.key(),
        "view": kind,
        "n_views": n_views,
    }
    return FeatureTable(keys=keys, features=features, meta=meta)


def _load(spec: dict[str, Any], project_dir: str, clip: dict[str, Any]) -> LoadedClip:
    """The configured model (``params:clip``); it must be the one ``clip_model_spec`` describes."""
    return load_configured_clip(
        clip, project_dir, spec.get("checkpoint_sha256"), "clip_model_spec.json describes"
    )


def _augment_args(embed: dict[str, Any]) -> dict[str, Any]:
    augment = embed.get("augment") or {}
    args: dict[str, Any] = {}
    for key in ("scale", "ratio"):
        if key in augment:
            args[key] = tuple(float(v) for v in augment[key])
    if "flip" in augment:
        args["flip"] = bool(augment["flip"])
    if "seed" in augment:
        args["seed"] = int(augment["seed"])
    return args


def _templates(clip: dict[str, Any]) -> list[str]:
    templates = clip["templates"]
    return [templates] if isinstance(templates, str) else list(templates)
