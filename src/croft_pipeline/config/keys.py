"""Unknown parameter keys: every key a run's parameters set that the typed model does not
declare (a typo, or a setting that is gone), each named by its full dotted key with the closest
declared key (``train.seeds: unknown key; did you mean seeds?``), all of them at once.

Kedro-free. The model is any pydantic model; its blocks are found through the field annotations
(a model, a list of models, an optional model). A mapping whose keys are names with a model each
(``train.method_params``: a method -> its hyper-parameters) is declared in ``keyed``; any other
mapping (``ingest.roots``) holds names of the user's own and is not walked.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel

from croft_pipeline.config.rules import ParameterError

CLOSE = 0.8  # the least difflib ratio of two key names for one to be suggested for the other
KeyPath = tuple[str | int, ...]  # a key's parts: mapping keys, and list indices


@dataclass(frozen=True)
class Keyed:
    """A mapping whose keys name models (``models``); with ``names_only`` only each model's
    field names are checked one level down, not their values (``train.grids.<method>.<field>``
    holds a list of values)."""

    models: Mapping[str, type[BaseModel]]
    names_only: bool = False


@dataclass(frozen=True)
class _Items:
    item: Any  # the shape of each element of a list


@dataclass(frozen=True)
class _Names:
    names: tuple[str, ...]  # a mapping's keys, their values unchecked


Keys = Mapping[tuple[type[BaseModel], str], Keyed]  # (model, field name) -> its keyed mapping


@dataclass(frozen=True)
class UnknownKey:
    """One unknown key: its ``path``, the dotted key of the block it is in (``""``: the top
    level), the keys that block takes, the closest declared key (``None``: none is close) and
    where it is set (``sources``: files, ``--params``)."""

    path: KeyPath
    block: str
    known: tuple[str, ...]
    close: str | None
    sources: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return dotted(self.path)

    @property
    def message(self) -> str:
        if self.close is not None:
            text = f"{self.key}: unknown key; did you mean {self.close}?"
        else:
            block = self.block or "the top level"
            text = f"{self.key}: unknown key; {block} takes {', '.join(self.known)}"
        return f"{text} (from {', '.join(self.sources)})" if self.sources else text


class UnknownKeysError(ParameterError):
    """Parameters that set keys no model declares: the message is the one key's line, or a
    count and then one line per key."""

    def __init__(self, unknown: Sequence[UnknownKey]):
        self.unknown = tuple(unknown)
        super().__init__(self.unknown[0].key, "be a declared key", None)
        lines = [key.message for key in self.unknown]
        if len(lines) > 1:
            lines = [f"{len(lines)} unknown parameter keys:", *(f"  {line}" for line in lines)]
        self.args = ("\n".join(lines),)


def dotted(path: KeyPath) -> str:
    """``("train", "grids", "linear_probe")`` -> ``train.grids.linear_probe``; an index as
    ``[i]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def unknown_keys(
    params: Mapping[str, Any],
    model: type[BaseModel],
    keyed: Keys | None = None,
    files: Mapping[str, Any] | None = None,
    moved: Mapping[str, str] | None = None,
) -> list[UnknownKey]:
    """Every key of ``params`` that ``model`` does not declare, sorted, each with the closest
    declared key (for a key in ``moved``, old dotted key -> new, its new place) and the
    ``files`` (label -> the parameters as written there) that set it."""
    keyed, moved = keyed or {}, moved or {}
    declared = list(_declared(model, params, (), keyed))
    unknown = [
        UnknownKey(
            path,
            dotted(path[:-1]),
            known,
            moved.get(dotted(path)) or closest(path, declared),
            tuple(label for label, tree in (files or {}).items() if _holds(tree, path)),
        )
        for path, known in _unknown(model, params, (), keyed)
    ]
    return sorted(unknown, key=lambda key: key.key)


def check_keys(
    params: Mapping[str, Any],
    model: type[BaseModel],
    keyed: Keys | None = None,
    files: Mapping[str, Any] | None = None,
    moved: Mapping[str, str] | None = None,
) -> None:
    """An :class:`UnknownKeysError` naming every unknown key of ``params``, if any."""
    unknown = unknown_keys(params, model, keyed, files, moved)
    if unknown:
        raise UnknownKeysError(unknown)


def closest(path: KeyPath, declared: Sequence[KeyPath]) -> str | None:
    """The declared key most like ``path``'s, dotted: among the keys of its block, of a block
    above it or of one below it (``seeds`` for ``train.seeds``, never ``ingest.splits`` for
    ``pretrain.zero_shot.splits``), the one with the most similar last name, then the most
    similar whole key (difflib ratios); ``None`` when no last name is close."""
    block, key = path[:-1], dotted(path)

    def related(candidate: KeyPath) -> bool:
        above = candidate[:-1]
        return block[: len(above)] == above or above[: len(block)] == block

    def score(candidate: KeyPath) -> tuple[float, float]:
        return _ratio(str(path[-1]), str(candidate[-1])), _ratio(key, dotted(candidate))

    best = max(filter(related, declared), key=score, default=None)
    return dotted(best) if best is not None and score(best)[0] >= CLOSE else None


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio()


def _children(shape: Any, keyed: Keys) -> dict[str, Any] | None:
    """The keys a mapping of this shape takes, each with its own shape; ``None``: any key."""
    if isinstance(shape, _Names):
        return dict.fromkeys(shape.names)
    if isinstance(shape, Keyed):
        if shape.names_only:
            return {name: _Names(tuple(m.model_fields)) for name, m in shape.models.items()}
        return dict(shape.models)
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        return {
            field.alias or name: keyed.get((shape, name)) or _shape(field.annotation)
            for name, field in shape.model_fields.items()
        }
    return None


def _shape(annotation: Any) -> Any:
    """What an annotation asks a value to hold: a model, a list of models, or nothing walked."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _shape(args[0])
    if origin in (Union, types.UnionType):
        return next((s for s in map(_shape, args) if s is not None), None)
    if origin is list and args:
        item = _shape(args[0])
        return None if item is None else _Items(item)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unknown(shape: Any, value: Any, path: KeyPath, keyed: Keys) -> Iterator[tuple[KeyPath, tuple]]:
    """(path, the keys its block takes) of every unknown key under ``value``."""
    if isinstance(shape, _Items):
        for i, item in enumerate(value if isinstance(value, list) else []):
            yield from _unknown(shape.item, item, (*path, i), keyed)
        return
    children = _children(shape, keyed)
    if children is None or not isinstance(value, Mapping):
        return  # a value of another type is the schema's to refuse
    for name, item in value.items():
        if name in children:
            yield from _unknown(children[name], item, (*path, name), keyed)
        else:
            yield (*path, str(name)), tuple(sorted(children))


def _declared(shape: Any, value: Any, path: KeyPath, keyed: Keys) -> Iterator[KeyPath]:
    """Every key the model declares (a list's elements: those ``value`` has)."""
    if isinstance(shape, _Items):
        for i, item in enumerate(value if isinstance(value, list) else []):
            yield from _declared(shape.item, item, (*path, i), keyed)
        return
    for name, child in (_children(shape, keyed) or {}).items():
        yield (*path, name)
        below = value.get(name) if isinstance(value, Mapping) else None
        yield from _declared(child, below, (*path, name), keyed)


def _holds(tree: Any, path: KeyPath) -> bool:
    """Whether the nested ``tree`` sets ``path``."""
    for part in path:
        if isinstance(part, int):
            if not (isinstance(tree, list) and part < len(tree)):
                return False
        elif not (isinstance(tree, Mapping) and part in tree):
            return False
        tree = tree[part]
    return True
