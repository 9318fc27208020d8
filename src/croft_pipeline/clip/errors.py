"""Errors raised when a CLIP model cannot be set up; each message says what to do."""

from __future__ import annotations


class ClipLoadError(ValueError):
    """A CLIP model spec (model name, pretrained tag or checkpoint, device) cannot be loaded."""


class MissingCheckpointError(ClipLoadError, FileNotFoundError):
    """``pretrained`` names a local checkpoint file that does not exist."""
