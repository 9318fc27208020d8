"""great-expectations (GX Core 1.x) suites for the manifest and the splits.

GX validates tables; checks that need the files or several rows (files decode, a sha256 in two
splits, candidates per class and domain) are computed into columns first, then expected.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from croft_pipeline.data.discovery import resolve_in_root
from croft_pipeline.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    inspect_image,
    side_limits,
)
from croft_pipeline.data.manifest import LABELLED_ROLES, MANIFEST_COLUMNS, ROLE_CLASS_KEYS, ROLES
from croft_pipeline.data.splits import (
    SOURCE_SPLITS,
    SPLIT_COLUMNS,
    SPLITS,
    group_counts,
    resolve_domains,
)
from croft_pipeline.validation.gx_runner import Suite, run_suites

logger = logging.getLogger(__name__)
FILE_OK = "ok"
COVERAGE_COLUMNS = ["class_name", "source_groups", "train_groups", "missing_from"]


def file_check(root_dir: Path | None, path: str, sha256: str, max_pixels: int) -> str:
    """``ok``, or why the manifest row's file is unusable (missing, outside, undecodable, changed)."""
    if root_dir is None:
        return "root not configured"
    try:
        target = resolve_in_root(root_dir, path)
    except ValueError as error:
        return str(error)
    if not target.is_file():
        return "file does not exist"
    try:
        info = inspect_image(target, max_pixels)
    except ImageDecodeError as error:
        return f"does not decode: {error}"
    return FILE_OK if info.sha256 == sha256 else "sha256 differs from the manifest (file changed)"


def with_file_checks(
    manifest: pd.DataFrame, root_dirs: dict[str, Path], max_pixels: int
) -> pd.DataFrame:
    checks = [
        file_check(root_dirs.get(r.root), r.path, r.sha256, max_pixels)
        for r in tqdm(
            manifest.itertuples(index=False),
            total=len(manifest),
            desc="check files",
            unit="img",
            mininterval=2,
        )
    ]
    return manifest.assign(file_check=checks)


def with_split_overlaps(splits: pd.DataFrame) -> pd.DataFrame:
    """Per row: in how many splits of its seed its sha256 appears, and in how many of train, val
    and test_id its group (concept) appears (both must be 1; the covariate test shares concepts
    with train by design: the same concept in a new style)."""
    out = splits.copy()
    out["splits_sharing_sha256"] = out.groupby(["seed", "sha256"])["split"].transform("nunique")
    source = out["split"].isin(SOURCE_SPLITS)
    shared = out[source].groupby(["seed", "group"])["split"].transform("nunique")
    out["splits_sharing_group"] = shared.reindex(out.index).fillna(1).astype(int)
    return out


def candidate_coverage(
    manifest: pd.DataFrame, id_classes: list[str], source_domains: list[str], splits: dict
) -> pd.DataFrame:
    """Per ID class: its source-domain groups, how many of them the train part gets, and the
    ID domains it has no image in (``missing_from``, shown when the class fails)."""
    ident = manifest[manifest["role"] == "id"]
    counts = ident[ident["domain"].isin(source_domains)].groupby("class_name")["group"].nunique()
    domains_of = ident.groupby("class_name")["domain"].unique()
    every = set(ident["domain"])
    fractions = float(splits.get("val_fraction", 0.2)), float(splits.get("test_fraction", 0.2))
    rows = []
    for name in id_classes:
        n_groups = int(counts.get(name, 0))
        train = group_counts(n_groups, *fractions)[2]
        missing = ", ".join(sorted(every - set(domains_of.get(name, [])))) or "none"
        rows.append(
            {
                "class_name": name,
                "source_groups": n_groups,
                "train_groups": train,
                "missing_from": missing,
            }
        )
    return pd.DataFrame(rows, columns=COVERAGE_COLUMNS)


def known_domains(manifest: pd.DataFrame, dataset: dict, params: dict) -> list[str]:
    """Configured domains (or EmojiShift's styles), plus each single-domain source's domain."""
    if dataset.get("domains"):
        known = list(dataset["domains"])
    elif params.get("source") == "emojishift":
        known = list(params["emojishift"]["styles"])
    else:
        return sorted(manifest["domain"].unique())
    extra = [
        s.get("domain") or s["root"]
        for s in params.get("sources", [])
        if s.get("layout", "domains") == "classes"
    ]
    return known + [d for d in extra if d not in known]


def manifest_suite(
    manifest: pd.DataFrame, id_classes: list[str], dataset: dict, params: dict
) -> Suite:
    import great_expectations.expectations as gxe

    least, most = side_limits(params.get("validation"))  # the bounds the manifest skips by
    id_rows = {"row_condition": 'role=="id"', "condition_parser": "pandas"}
    class_checks = [
        gxe.ExpectColumnValuesToBeInSet(column="class_name", value_set=id_classes, **id_rows)
    ]
    for role in ("openset", "openset_val"):  # open-set sources (role openset) may bring any class
        listed = list(dataset.get(ROLE_CLASS_KEYS[role]) or [])
        if listed:
            class_checks.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column="class_name",
                    value_set=listed,
                    row_condition=f'role=="{role}"',
                    condition_parser="pandas",
                )
            )
    expectations = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=MANIFEST_COLUMNS + ["file_check"], exact_match=False
        ),
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in MANIFEST_COLUMNS],
        gxe.ExpectColumnValuesToBeInSet(column="role", value_set=list(ROLES)),
        gxe.ExpectColumnValuesToBeInSet(
            column="domain", value_set=known_domains(manifest, dataset, params)
        ),
        *class_checks,
        gxe.ExpectColumnValuesToBeBetween(
            column="label", min_value=-1, max_value=len(id_classes) - 1
        ),
        gxe.ExpectColumnValuesToBeBetween(column="label", min_value=0, **id_rows),
        gxe.ExpectColumnValuesToBeUnique(column="sha256"),
        gxe.ExpectColumnValuesToBeInSet(column="file_check", value_set=[FILE_OK]),
        *[
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=least, max_value=most)
            for c in ("width", "height")
        ],
    ]
    return Suite("manifest", expectations, ["root", "path"])


def splits_suite(id_classes: list[str]) -> Suite:
    import great_expectations.expectations as gxe

    expectations = [
        gxe.ExpectTableColumnsToMatchSet(column_set=SPLIT_COLUMNS, exact_match=False),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        gxe.ExpectColumnValuesToBeInSet(column="role", value_set=list(LABELLED_ROLES)),
        gxe.ExpectColumnValuesToBeBetween(
            column="label", min_value=-1, max_value=len(id_classes) - 1
        ),
        gxe.ExpectColumnValuesToBeInSet(column="splits_sharing_sha256", value_set=[1]),
        gxe.ExpectColumnValuesToBeInSet(column="splits_sharing_group", value_set=[1]),
    ]
    return Suite("splits", expectations, ["seed", "split", "root", "path"])


def coverage_suite(shots: int | None) -> Suite:
    """Every ID class leaves val and test_id a group each and train at least ``shots`` groups."""
    import great_expectations.expectations as gxe

    least = max(1, int(shots or 1))
    expectations = [gxe.ExpectColumnValuesToBeBetween(column="train_groups", min_value=least)]
    return Suite("id_groups_per_class", expectations, ["class_name", "missing_from"])


def validate_ingest(
    manifest: pd.DataFrame,
    splits: pd.DataFrame,
    id_classes: list[str],
    dataset: dict,
    params: dict,
    root_dirs: dict[str, Path],
) -> dict[str, Any]:
    """Run every suite; returns ``{success, failure_message, suites: {name: GX result JSON}}``."""
    max_pixels = int(params.get("decode", {}).get("max_pixels", DEFAULT_MAX_PIXELS))
    sources = resolve_domains(manifest, dataset["heldout_domain"], dataset.get("source_domains"))
    batches = {
        "manifest": (
            manifest_suite(manifest, id_classes, dataset, params),
            with_file_checks(manifest, root_dirs, max_pixels),
        ),
        "splits": (splits_suite(id_classes), with_split_overlaps(splits)),
        "id_groups_per_class": (
            coverage_suite(params["splits"].get("shots")),
            candidate_coverage(manifest, id_classes, sources, params["splits"]),
        ),
    }
    report = run_suites(batches)
    if not report["success"]:
        logger.error(report["failure_message"])
    return report
