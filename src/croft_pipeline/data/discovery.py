"""Find image files under a dataset root, safely: no path leaves the root, every odd file is listed.

Layouts: ``domains`` = ``root/<domain>/<class>/<file>`` (PACS, VLCS, OfficeHome, DomainNet);
``classes`` = ``root/<class>/<file>`` (one domain for the whole root).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

DATASET_SOURCES = ("emojishift", "folder")  # ingest.source: rendered EmojiShift or a folder
LAYOUT_DEPTH = {"domains": 2, "classes": 1}  # folder levels above a file
# files at a root's top level that are not images of the dataset (licences, read-mes, dot files)
METADATA_FILES = ("*.md", "*.txt", "*.json", "*.csv", "LICENSE*", ".*")


@dataclass(frozen=True)
class Found:
    root: str
    path: str  # POSIX, relative to the root
    domain: str
    folder: str  # the class folder's name


@dataclass(frozen=True)
class Skipped:
    root: str
    path: str
    reason: str


def resolve_root(base: str | Path, root_path: str | Path) -> Path:
    """A root path from the config: absolute as given, relative to ``base`` (the project dir)."""
    path = Path(root_path).expanduser()
    return path if path.is_absolute() else Path(base) / path


def resolve_in_root(root_dir: str | Path, path: str) -> Path:
    """``root_dir/path`` with links resolved; ValueError if it points outside the root."""
    root = Path(root_dir).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"{path!r} points outside its dataset root {root}")
    return target


def image_file(
    dataset_roots: dict[str, str], project_dir: str | Path, root: str, path: str
) -> Path:
    """The file of a manifest row ``(root, path)``, via the ``dataset_roots`` table; never outside."""
    if root not in dataset_roots:
        raise KeyError(f"root {root!r} is not in dataset_roots {sorted(dataset_roots)}")
    return resolve_in_root(resolve_root(project_dir, dataset_roots[root]), path)


def _printable(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def discover(
    root_name: str,
    root_dir: str | Path,
    layout: str = "domains",
    domain: str | None = None,
    metadata_files: tuple[str, ...] = (),
) -> tuple[list[Found], list[Skipped]]:
    """Every file in the layout, plus a reason for every entry that cannot be used."""
    if layout not in LAYOUT_DEPTH:
        raise ValueError(
            f"root {root_name!r}: unknown layout {layout!r} (use {sorted(LAYOUT_DEPTH)})"
        )
    root = Path(root_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset root {root_name!r} does not exist or is not a folder: {root}"
        )
    real_root = root.resolve()
    depth = LAYOUT_DEPTH[layout]
    found: list[Found] = []
    skipped: list[Skipped] = []

    def skip(rel: str, reason: str) -> None:
        skipped.append(Skipped(root_name, _printable(rel), reason))

    for current, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(current).relative_to(root)
        parts = rel_dir.parts
        dirnames.sort()
        for name in list(dirnames):
            rel = (rel_dir / name).as_posix()
            if name.startswith("."):
                dirnames.remove(name)
                skip(rel + "/", "hidden folder (not read)")
            elif (Path(current) / name).is_symlink():
                dirnames.remove(name)
                skip(rel + "/", "symlinked folder (not followed)")
            elif not _is_utf8(name):
                dirnames.remove(name)
                skip(rel + "/", "folder name is not valid UTF-8 (not read)")
        if len(parts) == depth and not filenames and not dirnames:
            skip(rel_dir.as_posix() + "/", "empty class folder")
        for name in sorted(filenames):
            rel = (rel_dir / name).as_posix()
            full = Path(current) / name
            if len(parts) == 0 and any(fnmatch.fnmatch(name, p) for p in metadata_files):
                continue  # attribution, licences, stamps beside the data
            if not _is_utf8(name):
                skip(rel, "file name is not valid UTF-8")
            elif name.startswith("."):
                skip(rel, "hidden file")
            elif len(parts) != depth:
                where = "<domain>/<class>/<file>" if layout == "domains" else "<class>/<file>"
                skip(rel, f"not at the {where} level of the {layout!r} layout")
            elif full.is_symlink() and not full.exists():
                skip(rel, "broken symlink")
            elif full.is_symlink() and not full.resolve().is_relative_to(real_root):
                skip(rel, "symlink points outside the dataset root")
            elif not full.is_file():
                skip(rel, "not a regular file")
            else:
                file_domain = parts[0] if layout == "domains" else (domain or root_name)
                found.append(Found(root_name, rel, file_domain, parts[-1]))
    return found, skipped
