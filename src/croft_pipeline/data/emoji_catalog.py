"""The shipped emoji catalog (CLDR names, groups, subgroups) and class maps built from it."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

CODEPOINT_PATTERN = re.compile(r"^(?:U\+)?([0-9A-Fa-f]{4,6})$")


@dataclass(frozen=True)
class Emoji:
    codepoint: int
    name: str
    group: str
    subgroup: str

    @property
    def char(self) -> str:
        return chr(self.codepoint)

    @property
    def label(self) -> str:
        """``U+1F415``: the code point as written in the catalog and in file names."""
        return f"U+{self.codepoint:04X}"


def parse_codepoint(text: str | int) -> int:
    """``"U+1F415"``, ``"1F415"`` or an int -> 0x1F415."""
    if isinstance(text, int):
        return text
    match = CODEPOINT_PATTERN.match(str(text).strip())
    if not match:
        raise ValueError(f"not a code point: {text!r} (expected e.g. 'U+1F415')")
    return int(match.group(1), 16)


@cache
def load_catalog() -> dict[int, Emoji]:
    """The catalog shipped inside the package, keyed by code point."""
    raw = json.loads((files("croft_pipeline.data") / "emoji_catalog.json").read_text("utf-8"))
    return {
        parse_codepoint(item["codepoint"]): Emoji(
            parse_codepoint(item["codepoint"]), item["name"], item["group"], item["subgroup"]
        )
        for item in raw["emoji"]
    }


def resolve_class(name: str, spec: dict, catalog: dict[int, Emoji]) -> list[Emoji]:
    """The emoji of one class: its CLDR ``subgroups`` plus ``codepoints``, minus ``exclude``."""
    known_subgroups = {emoji.subgroup for emoji in catalog.values()}
    unknown = sorted(set(spec.get("subgroups", [])) - known_subgroups)
    if unknown:
        raise ValueError(f"class {name!r}: unknown CLDR subgroup(s) {unknown}")
    chosen = {e.codepoint for e in catalog.values() if e.subgroup in spec.get("subgroups", [])}
    for key in ("codepoints", "exclude"):
        missing = [c for c in spec.get(key, []) if parse_codepoint(c) not in catalog]
        if missing:
            raise ValueError(f"class {name!r}: {key} not in the emoji catalog: {missing}")
    chosen |= {parse_codepoint(c) for c in spec.get("codepoints", [])}
    chosen -= {parse_codepoint(c) for c in spec.get("exclude", [])}
    if not chosen:
        raise ValueError(f"class {name!r} has no emoji (give subgroups or codepoints)")
    return [catalog[c] for c in sorted(chosen)]


def build_class_map(classes: dict[str, dict]) -> dict[str, list[Emoji]]:
    """Class name -> its emoji; a code point may belong to one class only."""
    catalog = load_catalog()
    class_map = {name: resolve_class(name, spec or {}, catalog) for name, spec in classes.items()}
    owner: dict[int, str] = {}
    for name, members in class_map.items():
        for emoji in members:
            if emoji.codepoint in owner:
                raise ValueError(
                    f"{emoji.label} ({emoji.name}) is in two classes: "
                    f"{owner[emoji.codepoint]!r} and {name!r}"
                )
            owner[emoji.codepoint] = name
    return class_map


def split_pretrain(
    members: list[Emoji], pretrain_fraction: float, seed: int
) -> tuple[list[Emoji], list[Emoji]]:
    """Deterministically keep ``pretrain_fraction`` of a class's emoji aside for pretraining.

    The order is a hash of (seed, code point), so adding one emoji to a class moves no other.
    Returns ``(pretrain, downstream)``, each sorted by code point.
    """

    def rank(emoji: Emoji) -> str:
        return hashlib.sha256(f"{seed}:{emoji.codepoint}".encode()).hexdigest()

    ordered = sorted(members, key=rank)
    n_pretrain = int(round(len(ordered) * pretrain_fraction))
    pretrain = sorted(ordered[:n_pretrain], key=lambda e: e.codepoint)
    downstream = sorted(ordered[n_pretrain:], key=lambda e: e.codepoint)
    return pretrain, downstream
