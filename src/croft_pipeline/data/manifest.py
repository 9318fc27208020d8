"""The manifest: one row per usable image, and the ``ingest_skipped`` table for every other file."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from croft_pipeline.data.discovery import METADATA_FILES, Found, Skipped, discover
from croft_pipeline.data.errors import DataValidationError
from croft_pipeline.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    inspect_image,
    side_limits,
    side_problem,
)

MANIFEST_COLUMNS = [
    "root",
    "path",
    "sha256",
    "domain",
    "class_name",
    "label",
    "role",
    "group",
    "width",
    "height",
    "mode",
]
SKIPPED_COLUMNS = ["root", "path", "reason"]
ROLES = ("id", "openset", "openset_val", "pretrain")
SOURCE_ROLES = ("auto", *ROLES)
LABELLED_ROLES = ("id", "openset", "openset_val")  # pretraining images carry no class label
# the ``ingest.dataset`` list naming each role's classes (``auto`` sources)
ROLE_CLASS_KEYS = {
    "id": "id_classes",
    "openset": "openset_classes",
    "openset_val": "openset_val_classes",
}


@dataclass
class ClassNaming:
    """Folder name -> class name: per-domain map, then global map, then underscores to spaces."""

    class_names: dict[str, str] = field(default_factory=dict)
    class_names_by_domain: dict[str, dict[str, str]] = field(default_factory=dict)
    underscores_to_spaces: bool = True

    def __call__(self, domain: str, folder: str) -> str:
        by_domain = (self.class_names_by_domain or {}).get(domain, {})
        if folder in by_domain:
            return str(by_domain[folder])
        if folder in (self.class_names or {}):
            return str(self.class_names[folder])
        return folder.replace("_", " ") if self.underscores_to_spaces else folder


@dataclass
class Candidate:
    found: Found
    class_name: str
    role: str  # "auto" until classes are resolved


def class_domains(candidates: list[Candidate], openset: list[str]) -> dict[str, set[str]]:
    """Per class of the ``auto`` sources (``openset``: the open-set classes, test and
    validation, left out), the domains it is in."""
    domains_of: dict[str, set[str]] = defaultdict(set)
    for c in candidates:
        if c.role == "auto" and c.class_name not in openset:
            domains_of[c.class_name].add(c.found.domain)
    return dict(domains_of)


def missing_domains(domains_of: dict[str, set[str]]) -> dict[str, list[str]]:
    """Per class, the domains (of any class in ``domains_of``) it has no image in."""
    every = set().union(*domains_of.values())
    return {name: sorted(every - domains) for name, domains in sorted(domains_of.items())}


def infer_id_classes(missing: dict[str, list[str]]) -> list[str]:
    """Without a configured list: the classes with images in every domain of the ``auto``
    sources (``missing``: :func:`missing_domains`), the held-out one included (so the list does
    not change with ``heldout_domain``).

    Raises ValueError naming each class's missing domains when no class is in all of them.
    """
    classes = [name for name, domains in missing.items() if not domains]
    if missing and not classes:
        shown = "; ".join(f"{name!r} from {', '.join(d)}" for name, d in list(missing.items())[:8])
        raise ValueError(
            "ingest.dataset.id_classes is null, which keeps the classes with images in every "
            f"domain, and no class is in all of them: missing {shown}. List the ID classes in "
            "ingest.dataset.id_classes (or add the missing images)"
        )
    return classes


def _assign_role(candidate: Candidate, classes: dict[str, list[str]]) -> str | None:
    """The source's role, or for an ``auto`` source the role whose class list names the class."""
    if candidate.role != "auto":
        return candidate.role
    return next((role for role, names in classes.items() if candidate.class_name in names), None)


def role_classes(dataset: dict, id_classes: list[str]) -> dict[str, list[str]]:
    """Role -> its classes (``ingest.dataset`` lists); a class in two lists is an error naming
    both parameters."""
    classes = {"id": list(id_classes)}
    for role in ("openset", "openset_val"):
        classes[role] = list(dataset.get(ROLE_CLASS_KEYS[role]) or [])
    owner: dict[str, str] = {}
    for role, names in classes.items():
        for name in names:
            if name in owner:
                raise ValueError(
                    f"class {name!r} is in both ingest.dataset.{ROLE_CLASS_KEYS[owner[name]]} "
                    f"and ingest.dataset.{ROLE_CLASS_KEYS[role]} (a class has one role)"
                )
            owner[name] = role
    return classes


def _unassigned_reason(name: str, missing: list[str] | None) -> str:
    """Why an ``auto`` image of class ``name`` is skipped; ``missing``: the domains the class
    lacks when the ID classes were inferred (``id_classes: null``), else None."""
    if missing:
        return (
            f"class {name!r} has no image in domain(s) {', '.join(missing)}; id_classes: null "
            "keeps the classes in every domain (name it in ingest.dataset.id_classes to use it)"
        )
    return (
        f"class {name!r} is in none of ingest.dataset.id_classes, openset_classes and "
        "openset_val_classes"
    )


def group_of(path: str, sha256: str, pattern: re.Pattern | None) -> str:
    """The concept an image shows, shared by the images that must share a split: the ``group``
    match of ``group_pattern`` on the file stem in every domain (an emoji code point in all its
    styles and render variants), else the image's own sha256."""
    if pattern is not None:
        match = pattern.match(Path(path).stem)
        if match:
            return match.group("group")
    return sha256


def build_manifest(
    sources: list[dict],
    root_dirs: dict[str, Path],
    dataset: dict,
    decode: dict | None = None,
    validation: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Discover, name, decode and label every image. Returns (manifest, skipped, id_classes).

    An image whose sides are outside ``validation``'s ``min_side``/``max_side`` is skipped.
    """
    decode = decode or {}
    limits = side_limits(validation)
    naming = ClassNaming(
        dataset.get("class_names") or {},
        dataset.get("class_names_by_domain") or {},
        dataset.get("underscores_to_spaces", True),
    )
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    for source in sources:
        role = source.get("role", "auto")
        if role not in SOURCE_ROLES:
            raise ValueError(f"source {source}: role must be one of {SOURCE_ROLES}")
        if source["root"] not in root_dirs:
            raise ValueError(f"source root {source['root']!r} is not in roots {sorted(root_dirs)}")
        found, skips = discover(
            source["root"],
            root_dirs[source["root"]],
            source.get("layout", "domains"),
            source.get("domain"),
            tuple(decode.get("metadata_files", METADATA_FILES)),
        )
        skipped += skips
        candidates += [Candidate(f, naming(f.domain, f.folder), role) for f in found]

    not_id = [*(dataset.get("openset_classes") or []), *(dataset.get("openset_val_classes") or [])]
    inferred = not dataset.get("id_classes")
    missing = missing_domains(class_domains(candidates, not_id)) if inferred else {}
    id_classes = list(dataset.get("id_classes") or infer_id_classes(missing))
    classes = role_classes(dataset, id_classes)

    pattern = re.compile(dataset["group_pattern"]) if dataset.get("group_pattern") else None
    max_pixels = int(decode.get("max_pixels", DEFAULT_MAX_PIXELS))
    rows = []
    for candidate in tqdm(candidates, desc="decode images", unit="img", mininterval=2):
        f = candidate.found
        role = _assign_role(candidate, classes)
        if role is None:
            reason = _unassigned_reason(candidate.class_name, missing.get(candidate.class_name))
            skipped.append(Skipped(f.root, f.path, reason))
            continue
        try:
            info = inspect_image(root_dirs[f.root] / f.path, max_pixels)
        except ImageDecodeError as error:
            skipped.append(Skipped(f.root, f.path, str(error)))
            continue
        problem = side_problem(info.width, info.height, limits)
        if problem:
            skipped.append(Skipped(f.root, f.path, problem))
            continue
        rows.append(
            {
                "root": f.root,
                "path": f.path,
                "sha256": info.sha256,
                "domain": f.domain,
                "class_name": candidate.class_name,
                "label": id_classes.index(candidate.class_name) if role == "id" else -1,
                "role": role,
                "group": group_of(f.path, info.sha256, pattern),
                "width": info.width,
                "height": info.height,
                "mode": info.mode,
            }
        )
    manifest, duplicates = drop_duplicates(pd.DataFrame(rows, columns=MANIFEST_COLUMNS))
    skipped_table = pd.DataFrame(
        [(s.root, s.path, s.reason) for s in skipped], columns=SKIPPED_COLUMNS
    )
    skipped_table = pd.concat([skipped_table, duplicates], ignore_index=True)
    return manifest, skipped_table.sort_values(["root", "path"], ignore_index=True), id_classes


def label_conflicts(manifest: pd.DataFrame) -> list[str]:
    """One line per sha256 whose labelled (ID / open-set) copies disagree on class or role, naming
    every copy (``root:path``, role, class); pretraining copies carry no label and are never a
    conflict."""
    labelled = manifest[manifest["role"].isin(LABELLED_ROLES)]
    names = labelled.groupby("sha256")[["role", "class_name"]].nunique().max(axis=1)
    lines = []
    for sha in sorted(names[names > 1].index):
        copies = labelled[labelled["sha256"] == sha].sort_values(["root", "path"])
        shown = ", ".join(
            f"{r.root}:{r.path} ({r.role} class {r.class_name!r})" for r in copies.itertuples()
        )
        lines.append(f"sha256 {sha[:12]}: {shown}")
    return lines


def drop_duplicates(manifest: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one row per sha256 (in :data:`ROLES` order: ID first, pretraining last); list the
    others.

    Raises DataValidationError instead when copies of one file carry different labels.
    """
    conflicts = label_conflicts(manifest)
    if conflicts:
        raise DataValidationError(
            f"one file, one label: {len(conflicts)} file(s) have byte-identical copies under "
            "different classes or roles (remove or move the wrong copy):\n"
            + "\n".join(f"- {c}" for c in conflicts)
        )
    order = manifest.assign(_role=manifest["role"].map({r: i for i, r in enumerate(ROLES)}))
    order = order.sort_values(["_role", "root", "path"], kind="stable")
    first = order.drop_duplicates("sha256")
    dupes = order[order.duplicated("sha256")]
    kept = first.set_index("sha256")
    reasons = [
        f"duplicate of {kept.at[sha, 'root']}:{kept.at[sha, 'path']} (same sha256)"
        for sha in dupes["sha256"]
    ]
    skipped = pd.DataFrame(
        {"root": dupes["root"].values, "path": dupes["path"].values, "reason": reasons},
        columns=SKIPPED_COLUMNS,
    )
    result = first.drop(columns="_role").sort_values(["role", "root", "path"], ignore_index=True)
    return result.astype({"label": "int64", "width": "int64", "height": "int64"}), skipped
