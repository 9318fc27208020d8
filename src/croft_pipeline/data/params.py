"""The ``ingest`` parameter block: what is rendered or read, how it is split and validated.
Torch-free."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import field_validator, model_validator

from croft_pipeline.config.rules import (
    BOOLEAN,
    NONE_OR_TEXT,
    TEXT,
    UNIT,
    ParameterError,
    at_least,
    one_of,
    optional,
)
from croft_pipeline.data.corruptions import CORRUPTIONS, SEVERITIES
from croft_pipeline.data.discovery import DATASET_SOURCES, LAYOUT_DEPTH
from croft_pipeline.data.images import DEFAULT_MAX_SIDE, DEFAULT_MIN_SIDE
from croft_pipeline.data.manifest import SOURCE_ROLES
from croft_pipeline.methods.params import Params

COUNT = optional(at_least(1))


class SourceParams(Params):
    """One folder root read into the manifest (``layout``: ``domains`` or ``classes``)."""

    root: Annotated[str, TEXT]  # a name of ingest.roots
    layout: Annotated[str, one_of(sorted(LAYOUT_DEPTH))]
    role: Annotated[str, one_of(SOURCE_ROLES)] = "auto"
    domain: Annotated[str | None, NONE_OR_TEXT] = None  # layout classes: the root's one domain


class DatasetParams(Params):
    id_classes: list[str] | None = None
    openset_classes: list[str] | None = None
    openset_val_classes: list[str] | None = None  # OOD validation classes (split val_openset)
    openset_kinds: dict[str, str] = {}
    domains: list[str] | None = None
    source_domains: list[str] | None = None
    heldout_domain: Annotated[str, TEXT]
    class_names: dict[str, str] = {}
    class_names_by_domain: dict[str, dict[str, str]] = {}
    underscores_to_spaces: Annotated[bool, BOOLEAN] = True
    group_pattern: str | None = None

    @field_validator("group_pattern")
    @classmethod
    def _named_group(cls, pattern: str | None) -> str | None:
        key = "ingest.dataset.group_pattern"
        if pattern is None:
            return pattern
        try:
            compiled = re.compile(pattern)
        except re.error as error:
            raise ParameterError(key, f"be a regular expression ({error})", pattern) from None
        if "group" not in compiled.groupindex:
            raise ParameterError(key, "have a named group (?P<group>...)", pattern)
        return pattern


class DecodeParams(Params):
    max_pixels: Annotated[int, at_least(1)] = 89478485  # decompression-bomb limit (Pillow's)


class SplitsParams(Params):
    shots: Annotated[int | None, COUNT] = None
    val_fraction: Annotated[float, UNIT] = 0.2
    test_fraction: Annotated[float, UNIT] = 0.2
    val_per_class: Annotated[int | None, COUNT] = None
    openset_max_per_class: Annotated[int | None, COUNT] = None


class ValidationParams(Params):
    """Image sides (px) the manifest keeps and the validation gate checks."""

    min_side: Annotated[int, at_least(1)] = DEFAULT_MIN_SIDE
    max_side: Annotated[int, at_least(1)] = DEFAULT_MAX_SIDE

    @model_validator(mode="after")
    def _ordered(self) -> ValidationParams:
        if self.min_side > self.max_side:
            raise ParameterError("ingest.validation.min_side", "be <= max_side", self.min_side)
        return self


class ClassSplitParams(Params):
    """``ingest.emojishift.class_split``: the downstream classes drawn at random (Setup I)."""

    pool: list[str] | None = None  # CLDR subgroups (null: every subgroup of the catalog)
    min_emoji: Annotated[int, at_least(1)] = 1  # a subgroup is a class with this many emoji
    id_share: Annotated[float, UNIT]
    openset_val_share: Annotated[float, UNIT] = 0.0
    seed: int = 0

    @model_validator(mode="after")
    def _shares(self) -> ClassSplitParams:
        if self.id_share + self.openset_val_share >= 1:
            raise ParameterError(
                "ingest.emojishift.class_split.openset_val_share",
                "leave open-set test classes (id_share + openset_val_share < 1)",
                self.openset_val_share,
            )
        return self


class EmojiShiftParams(Params):
    """``ingest.emojishift`` (the fixed parts of the benchmark, how a glyph is drawn and the
    split's seed, are constants of :mod:`croft_pipeline.data.emojishift`)."""

    image_size: Annotated[int, at_least(1)] = 64
    pretrain_fraction: Annotated[float, UNIT] = 0.5
    styles: dict[str, dict[str, Any]]
    variants: list[dict[str, Any]]
    caption_templates: list[str]
    id_classes: list[dict[str, Any]]
    openset_classes: list[dict[str, Any]]
    openset_val_classes: list[dict[str, Any]] = []  # rendered downstream only, never pretrained on
    class_split: ClassSplitParams | None = None


class CorruptionParams(Params):
    """``ingest.corruptions``: corrupted copies of the ID test images as covariate test sets."""

    kinds: list[Annotated[str, one_of(CORRUPTIONS)]] = []
    severities: list[Annotated[int, one_of(SEVERITIES)]] = [1, 3, 5]
    root: Annotated[str, TEXT] = "corrupted"  # a name of ingest.roots (where the copies go)


class IngestParams(Params):
    source: Annotated[str, one_of(DATASET_SOURCES)] = "emojishift"
    roots: dict[str, Annotated[str, TEXT]]
    sources: list[SourceParams] = []
    dataset: DatasetParams
    decode: DecodeParams = DecodeParams()
    splits: SplitsParams = SplitsParams()
    validation: ValidationParams = ValidationParams()
    emojishift: EmojiShiftParams
    corruptions: CorruptionParams = CorruptionParams()

    @model_validator(mode="after")
    def _known_roots(self) -> IngestParams:
        for i, source in enumerate(self.sources):
            one_of(sorted(self.roots)).check(f"ingest.sources[{i}].root", source.root)
        if self.corruptions.kinds:
            one_of(sorted(self.roots)).check("ingest.corruptions.root", self.corruptions.root)
        return self
