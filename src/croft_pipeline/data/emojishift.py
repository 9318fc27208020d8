"""EmojiShift: a PACS-like benchmark rendered offline by Pillow from emoji fonts in pip wheels.

Domains are font styles (different artists), classes are groups of emoji with one meaning (CLDR
subgroups). Each class's emoji are split once, deterministically, into a pretraining half and a
downstream half, rendered under two roots::

    <downstream_root>/<domain>/<class_folder>/U+1F415_v0.png
    <pretrain_root>/<domain>/<class_folder>/U+1F415_v0.png

``_v<i>`` is a render variant (scale, shift, font weight) of one glyph; all variants of one glyph
share a ``group``. Rendering is deterministic and idempotent (a stamp of the configuration).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from croft_pipeline.common.files import atomic_write_bytes, sha256_file
from croft_pipeline.data.emoji_catalog import Emoji, build_class_map, load_catalog, split_pretrain
from croft_pipeline.data.fonts import attribution, font_codepoints, font_path

RENDERER_VERSION = 1
# How every glyph is drawn and which emoji are kept aside: fixed parts of the benchmark (the
# render stamp hashes them with the configuration, under the names they once had there).
GLYPH_SHARE = 0.8  # longest side of the inked glyph / canvas side (before a variant's scale)
SUPERSAMPLE = 2  # render at 2x, then downscale (antialiasing)
BACKGROUND = (255, 255, 255)
PRETRAIN_SPLIT_SEED = 0  # the pretraining / downstream split of each class's code points
RENDER_CONSTANTS = {
    "glyph_share": GLYPH_SHARE,
    "supersample": SUPERSAMPLE,
    "background": list(BACKGROUND),
    "split_seed": PRETRAIN_SPLIT_SEED,
}
STAMP_FILE = ".emojishift_stamp.json"
# File stems ``U+1F415_v2``; the manifest groups the render variants of one glyph by ``group``.
FILE_PATTERN = re.compile(r"^(?P<group>U\+[0-9A-F]{4,6})_v(?P<variant>[0-9]+)$")


@dataclass(frozen=True)
class RenderJob:
    root_key: str  # "downstream" or "pretrain"
    domain: str
    class_name: str
    emoji: Emoji
    variant: int

    @property
    def relpath(self) -> str:
        return (
            f"{self.domain}/{class_folder(self.class_name)}/{self.emoji.label}_v{self.variant}.png"
        )


def class_folder(class_name: str) -> str:
    """The folder of a class: its name with spaces as underscores (ingestion maps them back)."""
    return class_name.replace(" ", "_")


def codepoint_of(path: str) -> int | None:
    """The code point in an EmojiShift file name (``.../U+1F415_v2.png`` -> 0x1F415)."""
    match = FILE_PATTERN.match(Path(path).stem)
    return int(match.group("group")[2:], 16) if match else None


CLASS_KEYS = {
    "id": "id_classes",
    "openset": "openset_classes",
    "openset_val": "openset_val_classes",
}


def class_specs(config: dict, key: str) -> dict[str, dict]:
    """``config[key]`` (a list of ``{name, subgroups, codepoints, exclude}``) as name -> spec."""
    specs: dict[str, dict] = {}
    for item in config.get(key) or []:
        spec = dict(item)
        name = str(spec.pop("name"))
        if name in specs:
            raise ValueError(f"emojishift.{key}: class {name!r} is listed twice")
        specs[name] = spec
    return specs


def class_names(config: dict, key: str) -> list[str]:
    """The class names of ``id_classes``, ``openset_classes`` or ``openset_val_classes`` in
    configuration order."""
    return list(class_specs(config, key))


def listed_roles(config: dict) -> dict[str, str]:
    """Class name -> ``id``, ``openset`` or ``openset_val`` of the listed classes, in
    configuration order (ID order = label order); a class in two lists is an error."""
    roles: dict[str, str] = {}
    for role, key in CLASS_KEYS.items():
        for name in class_names(config, key):
            if name in roles:
                raise ValueError(
                    f"ingest.emojishift.{key}: class {name!r} is also in "
                    f"{CLASS_KEYS[roles[name]]} (a class has one role)"
                )
            roles[name] = role
    return roles


def class_roles(config: dict) -> dict[str, str]:
    """Class name -> ``id``, ``openset`` or ``openset_val`` of the downstream classes: the
    listed ones, or those ``class_split`` draws (ID in label order first)."""
    if config.get("class_split"):
        return split_roles(config)
    return listed_roles(config)


def split_roles(config: dict) -> dict[str, str]:
    """``class_split``'s classes (one per usable CLDR subgroup) split at random into roles."""
    split = config["class_split"]
    if config.get("openset_val_classes"):
        raise ValueError(
            "ingest.emojishift.openset_val_classes must be empty with class_split "
            "(class_split.openset_val_share draws the OOD validation classes)"
        )
    return draw_roles(
        sorted(pool_classes(config)),
        float(split["id_share"]),
        float(split.get("openset_val_share", 0.0)),
        int(split.get("seed", 0)),
    )


def subgroup_class(subgroup: str) -> str:
    """The class name of a CLDR subgroup under ``class_split``: ``animal-mammal`` -> ``animal mammal``."""
    return subgroup.replace("-", " ")


def pretrain_emoji(config: dict) -> dict[str, list[Emoji]]:
    """Per listed ID / open-set class, the emoji kept aside for pretraining (``pretrain_fraction``)."""
    specs = {**class_specs(config, "id_classes"), **class_specs(config, "openset_classes")}
    return {
        name: split_pretrain(members, config["pretrain_fraction"], PRETRAIN_SPLIT_SEED)[0]
        for name, members in build_class_map(specs).items()
    }


def covered_everywhere(config: dict) -> set[int]:
    """The code points every style's font draws."""
    fonts = [font_codepoints(str(font_path(s["font"]))) for s in config["styles"].values()]
    return set.intersection(*(set(f) for f in fonts)) if fonts else set()


def pool_classes(config: dict) -> dict[str, list[Emoji]]:
    """``class_split``'s downstream classes: per CLDR subgroup of ``pool`` (null: every subgroup
    of the catalog), its emoji not kept aside for pretraining (so the default CLIP's pairs stay
    the same), when at least ``min_emoji`` of them are drawn by every style."""
    split = config["class_split"]
    catalog = load_catalog()
    known = sorted({e.subgroup for e in catalog.values()})
    pool = split.get("pool") or known
    unknown = sorted(set(pool) - set(known))
    if unknown:
        raise ValueError(f"ingest.emojishift.class_split.pool: unknown CLDR subgroup(s) {unknown}")
    reserved = {e.codepoint for members in pretrain_emoji(config).values() for e in members}
    covered = covered_everywhere(config)
    classes: dict[str, list[Emoji]] = {}
    for subgroup in pool:
        members = [
            e for c, e in sorted(catalog.items()) if e.subgroup == subgroup and c not in reserved
        ]
        if sum(e.codepoint in covered for e in members) >= int(split.get("min_emoji", 1)):
            classes[subgroup_class(subgroup)] = members
    return classes


def draw_roles(
    names: list[str], id_share: float, openset_val_share: float, seed: int
) -> dict[str, str]:
    """A seeded random split of ``names`` into ID (``id_share`` of them, at least one),
    open-set validation (``openset_val_share``) and open-set test (the rest, at least one).

    The result is ordered ID first (sorted: the label order), then the others, sorted.
    """
    if len(names) < 2:
        raise ValueError(f"class_split needs at least 2 classes, got {len(names)}")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n_id = min(len(names) - 1, max(1, round(len(names) * id_share)))
    n_val = min(len(names) - n_id - 1, round(len(names) * openset_val_share))
    roles = {name: "id" for name in sorted(order[:n_id])}
    roles |= {name: "openset_val" for name in sorted(order[n_id : n_id + n_val])}
    roles |= {name: "openset" for name in sorted(order[n_id + n_val :])}
    return dict(sorted(roles.items(), key=lambda item: item[1] != "id"))


def downstream_emoji(config: dict) -> dict[str, list[Emoji]]:
    """Per downstream class, its emoji rendered under the downstream root."""
    if config.get("class_split"):
        return pool_classes(config)
    roles = listed_roles(config)
    specs = {name: class_specs(config, CLASS_KEYS[role])[name] for name, role in roles.items()}
    kept = pretrain_emoji(config)
    return {
        name: [e for e in members if e not in kept.get(name, [])]
        for name, members in build_class_map(specs).items()
    }


def class_kinds(roles: dict[str, str], class_map: dict[str, list[Emoji]]) -> dict[str, str]:
    """Open-set class (test or validation) -> ``near`` (shares a CLDR group with an ID class)
    or ``far``."""
    id_groups = {e.group for name, role in roles.items() if role == "id" for e in class_map[name]}
    return {
        name: "near" if {e.group for e in class_map[name]} & id_groups else "far"
        for name, role in roles.items()
        if role != "id"
    }


def plan_jobs(config: dict) -> tuple[list[RenderJob], dict[str, Any]]:
    """Every image to render, and a summary of the classes (for the receipt): the downstream
    classes under the downstream root, the emoji kept aside (``id_classes`` and
    ``openset_classes`` only) under the pretraining root."""
    roles = class_roles(config)
    downstream = downstream_emoji(config)
    pretrain = pretrain_emoji(config)
    kinds = class_kinds(roles, downstream)
    classes: dict[str, Any] = {}
    for name, role in roles.items():
        classes[name] = {
            "role": role,
            "kind": kinds.get(name),
            "folder": class_folder(name),
            "cldr_groups": sorted({e.group for e in downstream[name]}),
            "pretrain": [e.label for e in pretrain.get(name, [])],
            "downstream": [e.label for e in downstream[name]],
        }
    for name in pretrain.keys() - roles.keys():  # class_split: the pretraining classes
        classes[name] = {
            "role": "pretrain",
            "folder": class_folder(name),
            "pretrain": [e.label for e in pretrain[name]],
        }
    jobs: list[RenderJob] = []
    for name in classes:
        for domain, style in config["styles"].items():
            covered = font_codepoints(str(font_path(style["font"])))
            for root_key, members_of in (("downstream", downstream), ("pretrain", pretrain)):
                jobs += [
                    RenderJob(root_key, domain, name, emoji, variant)
                    for emoji in members_of.get(name, [])
                    if emoji.codepoint in covered
                    for variant in range(len(config["variants"]))
                ]
    return jobs, classes


class GlyphRenderer:
    """Renders one glyph: crop to its ink, scale to a share of the canvas, center, shift."""

    def __init__(self, config: dict):
        self.size = int(config["image_size"])
        self.variants = config["variants"]
        self.styles = config["styles"]
        self._fonts: dict[tuple[str, float | None], ImageFont.FreeTypeFont] = {}

    def _font(self, domain: str, variant: int) -> ImageFont.FreeTypeFont:
        weights = self.styles[domain].get("weights") or [None]
        weight = weights[variant % len(weights)]
        key = (domain, weight)
        if key not in self._fonts:
            font = ImageFont.truetype(
                str(font_path(self.styles[domain]["font"])), self.size * SUPERSAMPLE
            )
            if weight is not None:
                font.set_variation_by_axes([weight])
            self._fonts[key] = font
        return self._fonts[key]

    def render(self, domain: str, char: str, variant: int) -> Image.Image | None:
        """The RGB image, or None when the font draws no ink for ``char``."""
        font = self._font(domain, variant)
        left, top, right, bottom = font.getbbox(char)
        pad = self.size * SUPERSAMPLE // 4
        layer = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
        ImageDraw.Draw(layer).text(
            (pad - left, pad - top),
            char,
            font=font,
            fill=(0, 0, 0, 255),
            embedded_color=bool(self.styles[domain].get("embedded_color", False)),
        )
        ink = layer.getchannel("A").getbbox()
        if ink is None:
            return None
        glyph = layer.crop(ink)
        spec = self.variants[variant]
        factor = self.size * GLYPH_SHARE * float(spec.get("scale", 1.0)) / max(glyph.size)
        glyph = glyph.resize(
            (max(1, round(glyph.width * factor)), max(1, round(glyph.height * factor))),
            Image.Resampling.LANCZOS,
        )
        shift_x, shift_y = spec.get("shift", (0.0, 0.0))
        x = (self.size - glyph.width) // 2 + round(shift_x * self.size)
        y = (self.size - glyph.height) // 2 + round(shift_y * self.size)
        canvas = Image.new("RGB", (self.size, self.size), BACKGROUND)
        canvas.paste(glyph, (x, y), glyph)
        return canvas


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def write_if_changed(path: Path, data: bytes) -> None:
    """Write ``data`` through a temporary file and a rename (never a half-written ``path``).

    No fsync per file (thousands of small files); the caller syncs once before its stamp.
    """
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def config_stamp(config: dict) -> str:
    """A hash of everything that changes the rendered images: config, render constants, fonts,
    renderer."""
    fonts = {d: sha256_file(font_path(s["font"])) for d, s in sorted(config["styles"].items())}
    payload = json.dumps(
        {"config": {**config, **RENDER_CONSTANTS}, "fonts": fonts, "renderer": RENDERER_VERSION},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_stamp(root: Path) -> dict:
    try:
        return json.loads((root / STAMP_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def _all_present(roots: dict[str, Path], files: dict[str, list[str]]) -> bool:
    return all((roots[key] / rel).is_file() for key, rels in files.items() for rel in rels)


def write_attribution(root: Path, config: dict, stamp: str) -> None:
    """ATTRIBUTION.md and one LICENSE-<domain>.txt per style, beside the rendered images."""
    lines = [
        "# EmojiShift: attribution and licences",
        "",
        "Images in this folder were rendered by croft-pipeline with Pillow from the emoji fonts",
        "below (one domain per font). Each domain's images are derived from its font and keep its",
        "licence: the OpenMoji images are adaptations under CC BY-SA 4.0 (share alike, credit",
        "OpenMoji); Noto Emoji is under the SIL Open Font License 1.1; Symbola is free for any use.",
        f"Render stamp: {stamp}",
        "",
    ]
    for domain, style in config["styles"].items():
        info = attribution(domain, style["font"])
        lines += [
            f"## {domain}",
            "",
            f"- Artist: {info.get('artist')}",
            f"- Font: {info.get('family')} {info.get('version')} ({info.get('font_file')})",
            f"- Copyright: {info.get('copyright')}",
            f"- Licence: {info.get('license_summary')} — {info.get('license')}",
            f"- Licence URL: {info.get('license_url')}",
            f"- Shipped by: {info.get('package')}",
            "",
        ]
        if info.get("license_text"):
            header = (
                f"Licence file of the pip package {info.get('package')}, which ships the font:\n\n"
            )
            atomic_write_bytes(
                root / f"LICENSE-{domain}.txt", (header + info["license_text"]).encode()
            )
    atomic_write_bytes(root / "ATTRIBUTION.md", "\n".join(lines).encode())


def render_emojishift(config: dict, downstream_root: Path, pretrain_root: Path) -> dict[str, Any]:
    """Render (or reuse) EmojiShift under the two roots and return a small JSON-able receipt."""
    roots = {"downstream": Path(downstream_root), "pretrain": Path(pretrain_root)}
    jobs, classes = plan_jobs(config)
    stamp = config_stamp(config)
    previous = _read_stamp(roots["downstream"])
    reused = previous.get("stamp") == stamp and _all_present(roots, previous.get("files", {}))
    files: dict[str, list[str]] = {"downstream": [], "pretrain": []}
    no_ink: list[str] = []
    if reused:
        files = previous["files"]
        no_ink = previous.get("no_ink", [])
    else:
        renderer = GlyphRenderer(config)
        for job in tqdm(jobs, desc="render EmojiShift", unit="img", mininterval=2):
            image = renderer.render(job.domain, job.emoji.char, job.variant)
            if image is None:
                no_ink.append(f"{job.domain}/{job.emoji.label}")
                continue
            write_if_changed(roots[job.root_key] / job.relpath, png_bytes(image))
            files[job.root_key].append(job.relpath)
        _remove_stale(roots, previous.get("files", {}), files)
        os.sync()  # every image on disk before the stamp below declares the render complete
        for root in roots.values():
            write_attribution(root, config, stamp)
        record = {"stamp": stamp, "files": files, "no_ink": sorted(set(no_ink))}
        atomic_write_bytes(roots["downstream"] / STAMP_FILE, json.dumps(record).encode())
    return _receipt(config, stamp, reused, jobs, files, classes, sorted(set(no_ink)))


def _remove_stale(roots: dict[str, Path], old: dict, new: dict) -> None:
    """Delete images an earlier configuration rendered that this one does not (never others)."""
    for key, rels in old.items():
        for rel in set(rels) - set(new.get(key, [])):
            target = (roots[key] / rel).resolve()
            if target.is_relative_to(roots[key].resolve()):
                target.unlink(missing_ok=True)


def _receipt(config, stamp, reused, jobs, files, classes, no_ink) -> dict[str, Any]:
    written = {key: set(rels) for key, rels in files.items()}
    per_domain: dict[str, dict[str, int]] = {}
    per_class: dict[str, dict[str, int]] = {}
    for job in jobs:
        if job.relpath in written[job.root_key]:
            bucket = per_domain.setdefault(job.domain, {"downstream": 0, "pretrain": 0})
            bucket[job.root_key] += 1
            if job.root_key == "downstream":
                counts = per_class.setdefault(job.class_name, {})
                counts[job.domain] = counts.get(job.domain, 0) + 1
    return {
        "dataset": "emojishift",
        "stamp": stamp,
        "reused": reused,
        "image_size": config["image_size"],
        "domains": list(config["styles"]),
        "variants": len(config["variants"]),
        "images": {key: len(rels) for key, rels in files.items()},
        "images_per_domain": per_domain,
        "downstream_images_per_class": per_class,
        "glyphs_without_ink": no_ink,
        "classes": classes,
    }


def captions(name: str, class_name: str, templates: list[str]) -> list[str]:
    """The captions of one emoji image, e.g. ``"dog face"``, ``"an emoji of a mammal"``."""
    return [t.format(name=name, class_name=class_name) for t in templates]


PAIR_COLUMNS = ["root", "path", "sha256", "domain", "caption"]


def caption_templates(config: dict | None) -> list[str]:
    """``ingest.emojishift.caption_templates``, or the bare emoji name when unset."""
    return (config or {}).get("caption_templates") or ["{name}"]


def build_pretrain_pairs(manifest: pd.DataFrame, templates: list[str]) -> pd.DataFrame:
    """One row per (pretraining image, caption); captions from the emoji's CLDR name and class."""
    catalog = load_catalog()
    rows = []
    for record in manifest[manifest["role"] == "pretrain"].itertuples(index=False):
        codepoint = codepoint_of(record.path)
        if codepoint is None or codepoint not in catalog:
            continue  # not an EmojiShift file: no caption to give
        for caption in captions(catalog[codepoint].name, record.class_name, templates):
            rows.append((record.root, record.path, record.sha256, record.domain, caption))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)
