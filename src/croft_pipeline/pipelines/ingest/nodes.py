"""Thin Kedro nodes of the ingest pipeline; the logic lives in croft_pipeline.data / .validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from croft_pipeline.config.rules import one_of
from croft_pipeline.data.corruptions import corrupt_test_images
from croft_pipeline.data.discovery import DATASET_SOURCES, resolve_root
from croft_pipeline.data.emojishift import (
    FILE_PATTERN,
    build_pretrain_pairs,
    caption_templates,
    class_roles,
    render_emojishift,
)
from croft_pipeline.data.manifest import ROLE_CLASS_KEYS, build_manifest
from croft_pipeline.data.splits import make_splits
from croft_pipeline.validation import DataValidationError, validate_ingest


def _root_dirs(params: dict, project_dir: str) -> dict[str, Path]:
    return {name: resolve_root(project_dir, path) for name, path in params["roots"].items()}


def _dataset(params: dict) -> dict:
    """The dataset block, with EmojiShift's class lists (listed, or drawn by its class_split)
    and file pattern when it leaves them unset."""
    dataset = dict(params["dataset"])
    if params["source"] == "emojishift":
        roles = class_roles(params["emojishift"])
        for role, key in ROLE_CLASS_KEYS.items():
            dataset[key] = dataset.get(key) or [n for n, r in roles.items() if r == role]
        dataset["group_pattern"] = dataset.get("group_pattern") or FILE_PATTERN.pattern
    return dataset


def render_dataset(params: dict, project_dir: str) -> dict[str, Any]:
    """Render EmojiShift into its roots (idempotent), or check a user's roots exist."""
    roots = _root_dirs(params, project_dir)
    if params["source"] == "emojishift":
        missing = {"main", "pretrain"} - set(roots)
        if missing:
            raise ValueError(
                f"EmojiShift renders into ingest.roots main and pretrain; missing {missing}"
            )
        return render_emojishift(params["emojishift"], roots["main"], roots["pretrain"])
    one_of(DATASET_SOURCES).check("ingest.source", params["source"])  # the start-of-run rule, again
    used = {source["root"] for source in params["sources"]}
    missing = {n: str(p) for n, p in roots.items() if n in used and not p.is_dir()}
    if missing:
        raise FileNotFoundError(f"dataset roots not found (set ingest.roots): {missing}")
    return {"dataset": "folder", "roots": {name: str(path) for name, path in roots.items()}}


def build_manifest_table(
    render_receipt: dict, params: dict, project_dir: str
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Manifest candidate, the skipped-files table and the ordered ID classes."""
    del render_receipt  # an input only so that Kedro runs the render step first
    return build_manifest(
        params["sources"],
        _root_dirs(params, project_dir),
        _dataset(params),
        params["decode"],
        params.get("validation"),
    )


def build_splits(
    manifest: pd.DataFrame, params: dict, seeds: list[int], project_dir: str
) -> pd.DataFrame:
    """Every seed's splits, plus in ``test_covariate`` the corrupted copies of its ID test images
    (``ingest.corruptions``; written under their root here, like the rendered images)."""
    dataset, splits = params["dataset"], params["splits"]
    table = make_splits(
        manifest,
        seeds,
        heldout_domain=dataset["heldout_domain"],
        shots=splits.get("shots"),
        val_per_class=splits.get("val_per_class"),
        val_fraction=float(splits["val_fraction"]),
        test_fraction=float(splits["test_fraction"]),
        source_domains=dataset.get("source_domains"),
        openset_max_per_class=splits.get("openset_max_per_class"),
    )
    corruptions = params.get("corruptions") or {}
    if not corruptions.get("kinds"):
        return table
    copies = corrupt_test_images(
        table,
        _root_dirs(params, project_dir),
        corruptions["root"],
        list(corruptions["kinds"]),
        [int(s) for s in corruptions["severities"]],
    )
    return pd.concat([table, copies], ignore_index=True)


def build_pretrain_pairs_table(manifest: pd.DataFrame, params: dict) -> pd.DataFrame:
    return build_pretrain_pairs(manifest, caption_templates(params.get("emojishift")))


def validate_data(
    manifest: pd.DataFrame,
    splits: pd.DataFrame,
    id_classes: list[str],
    params: dict,
    project_dir: str,
) -> dict[str, Any]:
    """The full GX result as JSON; the next node publishes it, or raises when it failed."""
    return validate_ingest(
        manifest, splits, id_classes, _dataset(params), params, _root_dirs(params, project_dir)
    )


def openset_class_kinds(render_receipt: dict, params: dict) -> dict[str, str]:
    """Open-set class -> ``near`` | ``far``: EmojiShift's own (shares a CLDR group with an ID
    class, or not), or ``ingest.dataset.openset_kinds`` for a folder dataset (may be empty)."""
    configured = dict(params["dataset"].get("openset_kinds") or {})
    if params["source"] != "emojishift":
        return configured
    classes = render_receipt.get("classes", {})
    kinds = {name: c["kind"] for name, c in classes.items() if c.get("role") == "openset"}
    return {**kinds, **configured}


def publish_validated(
    report: dict[str, Any],
    render_receipt: dict[str, Any],
    manifest: pd.DataFrame,
    skipped: pd.DataFrame,
    splits: pd.DataFrame,
    pretrain_pairs: pd.DataFrame,
    id_classes: list[str],
    openset_kinds: dict[str, str],
    params: dict,
) -> dict[str, Any]:
    """Every ingest output at once, keyed by catalog name; raises instead when validation failed,
    so a failed run leaves the last good files (tables and reports alike) as they were."""
    if not report["success"]:
        raise DataValidationError(report["failure_message"])
    return {
        "emojishift_receipt": render_receipt,
        "manifest": manifest,
        "ingest_skipped": skipped,
        "splits": splits,
        "pretrain_pairs": pretrain_pairs,
        "id_classes": id_classes,
        "openset_kinds": openset_kinds,
        "dataset_roots": {name: str(path) for name, path in params["roots"].items()},
        "data_validation_report": report,
    }
