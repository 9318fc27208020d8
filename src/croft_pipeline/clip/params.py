"""The ``clip``, ``embed`` and ``pretrain`` parameter blocks: the CLIP model every pipeline
uses, how images are embedded, and how the offline default CLIP is trained. Torch-free."""

from __future__ import annotations

from typing import Annotated

from croft_pipeline.config.rules import (
    BOOLEAN,
    NON_NEGATIVE,
    NONE_OR_TEXT,
    POSITIVE,
    RUNNER,
    SHARE,
    TEXT,
    THREAD_COUNT,
    UNIT,
    Rule,
    at_least,
    interval,
    one_of,
    optional,
)
from croft_pipeline.methods.params import Params
from croft_pipeline.ood.wordnet import PARTS as WORDNET_PARTS

PRECISIONS = ("fp32", "bf16")
PRECISION = one_of(PRECISIONS)
TEMPLATES = Rule(
    "be one prompt template or a non-empty list of them, each containing '{}'",
    lambda t: (
        isinstance(t, str | list | tuple)
        and bool(t)
        and all(isinstance(x, str) and "{}" in x for x in ([t] if isinstance(t, str) else t))
    ),
)
NEGATIVE_PARTS = Rule(
    f"be a non-empty list of WordNet parts of speech among {sorted(WORDNET_PARTS)}",
    lambda v: isinstance(v, list) and bool(v) and set(v) <= set(WORDNET_PARTS),
)
ACTORS = Rule(
    "be auto or an integer >= 1",
    lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
)


class ClipParams(Params):
    model_name: Annotated[str, TEXT]  # an open_clip name (checked by the project model)
    pretrained: Annotated[str | None, NONE_OR_TEXT] = None  # hub tag, or a checkpoint path
    device: Annotated[str, TEXT] = "auto"
    precision: Annotated[str, PRECISION] = "fp32"
    num_threads: Annotated[int | str | None, THREAD_COUNT] = "auto"
    templates: Annotated[str | list[str], TEMPLATES]


class AugmentParams(Params):
    scale: Annotated[list[float], interval(SHARE)] = [0.08, 1.0]
    ratio: Annotated[list[float], interval(POSITIVE)] = [0.75, 1.3333333]
    flip: Annotated[bool, BOOLEAN] = True
    seed: Annotated[int, at_least(0)] = 0


class RayActors(Params):
    """``embed.runner: ray``: CLIP actors of Ray Data (croft_pipeline.distributed.embed)."""

    actors: Annotated[int | str, ACTORS] = "auto"
    cpus_per_actor: Annotated[float, POSITIVE] = 1.0
    decode_cpus: Annotated[float, POSITIVE] = 0.5


class NegativeLabelParams(Params):
    """``embed.negative_labels``: NegLabel's vocabulary and NegMining (ood.wordnet, ood.neglabel)."""

    wordnet_dir: Annotated[str, TEXT] = "/usr/share/wordnet"
    parts: Annotated[list[str], NEGATIVE_PARTS] = ["noun", "adj"]
    adjective_templates: Annotated[list[str], TEMPLATES] = ["a {} emoji"]
    quantile: Annotated[float, UNIT] = 0.95
    max_candidates: Annotated[int | None, optional(at_least(1))] = None
    seed: Annotated[int, at_least(0)] = 0


class EmbedParams(Params):
    cache_dir: Annotated[str, TEXT]
    n_views: Annotated[int, at_least(1)] = 10
    augment: AugmentParams = AugmentParams()
    batch_size: Annotated[int, at_least(1)] = 128
    chunk_rows: Annotated[int, at_least(1)] = 512
    num_workers: Annotated[int, at_least(0)] = 2
    runner: Annotated[str, RUNNER] = "local"
    ray: RayActors = RayActors()
    negative_labels: NegativeLabelParams = NegativeLabelParams()


class ZeroShotCheck(Params):
    """``pretrain.zero_shot`` (its splits: ``pipelines.pretrain.nodes.ZERO_SHOT_SPLITS``)."""

    enabled: Annotated[bool, BOOLEAN] = True


class PretrainParams(Params):
    checkpoint: Annotated[str, TEXT]
    feature_cache: Annotated[str, TEXT]
    emojishift_roots: dict[str, Annotated[str, TEXT]]
    force: Annotated[bool, BOOLEAN] = False
    steps: Annotated[int, at_least(1)]
    batch_size: Annotated[int, at_least(1)]
    lr: Annotated[float, POSITIVE]
    weight_decay: Annotated[float, NON_NEGATIVE]
    warmup_steps: Annotated[int, at_least(0)]
    views: Annotated[int, at_least(1)]
    crop_scale: Annotated[list[float], interval(SHARE)]
    flip: Annotated[bool, BOOLEAN]
    grayscale_p: Annotated[float, UNIT]
    lock_text_tower: Annotated[bool, BOOLEAN]
    bf16: Annotated[bool, BOOLEAN]
    seed: Annotated[int, at_least(0)]
    num_threads: Annotated[int, at_least(1)]  # fixed: the count changes the checkpoint's bits
    zero_shot: ZeroShotCheck = ZeroShotCheck()
