"""Small, Kedro-free I/O helpers: atomic writes, sealed safetensors files, hashing.

Every safetensors file the project writes is *sealed*: its header's metadata carries
``content_sha256``, the sha256 of the rest of the header and of the tensor bytes
(:func:`seal_safetensors`). :func:`read_safetensors` checks it on every read, so a flipped byte
is an error naming the file, never data used silently.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    A crash part-way leaves at most a ``*.tmp`` file behind, never a truncated ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise OSError(
            error.errno,
            f"no space left on the device of {path.parent} while writing {path.name} "
            f"({shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free): free space there, "
            "then rerun (the file was left as it was)",
        ) from error
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """``data`` as indented JSON at ``path``, atomically."""
    return atomic_write_bytes(path, json.dumps(data, indent=2).encode("utf-8"))


DIGEST_KEY = "content_sha256"  # in a sealed safetensors file's header metadata


class CorruptFileError(ValueError):
    """A file's bytes do not match the digest recorded for them."""


def _split_safetensors(data: bytes, where: str | os.PathLike = "safetensors data"):
    """``(header dict, tensor bytes)`` of safetensors ``data``; malformed data is an error."""
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (struct.error, ValueError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"{where}: not a safetensors file ({error})") from None
    return header, data[8 + size :]


def _pack_safetensors(header: dict[str, Any], body: bytes) -> bytes:
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format asks for a multiple of 8 bytes
    return struct.pack("<Q", len(text)) + text + body


def _content_digest(header: dict[str, Any], body: bytes) -> str:
    """sha256 of the header without its digest entry (sorted JSON) and of the tensor bytes."""
    metadata = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != DIGEST_KEY}
    unsealed = {**header, "__metadata__": metadata}
    digest = hashlib.sha256(json.dumps(unsealed, sort_keys=True, separators=(",", ":")).encode())
    digest.update(body)
    return digest.hexdigest()


def seal_safetensors(data: bytes) -> bytes:
    """The same safetensors file, its header's keys sorted and sealed with :data:`DIGEST_KEY`.

    safetensors writes the header's maps in an order that changes from process to process, so
    equal tensors would give files with different hashes (and DVC would see a new output on every
    run); sorting makes the bytes reproducible. Offsets count from the end of the header, so only
    the header changes.
    """
    header, body = _split_safetensors(data)
    metadata = dict(header.get("__metadata__") or {})
    metadata[DIGEST_KEY] = _content_digest(header, body)
    return _pack_safetensors({**header, "__metadata__": metadata}, body)


def save_safetensors(
    path: str | os.PathLike, tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> Path:
    """Write torch tensors as a sealed safetensors file, atomically and byte-reproducibly."""
    return atomic_write_bytes(path, sealed_bytes(tensors, metadata))


def sealed_bytes(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    """The sealed file of torch ``tensors`` (detached, contiguous, on the CPU)."""
    from safetensors.torch import save  # torch only where tensors are written

    portable = {key: value.detach().contiguous().cpu() for key, value in tensors.items()}
    return seal_safetensors(save(portable, metadata=metadata))


def tensors_digest(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> str:
    """The :data:`DIGEST_KEY` that :func:`save_safetensors` records for these tensors."""
    header, _ = _split_safetensors(sealed_bytes(tensors, metadata))
    return header["__metadata__"][DIGEST_KEY]


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of a safetensors file, unchecked (reads the header only); a file that
    is not one is a :class:`CorruptFileError`."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        header, _ = _split_safetensors(head + handle.read(size), path)
    return dict(header.get("__metadata__") or {})


def recorded_digest(path: str | os.PathLike) -> str | None:
    """The digest a safetensors file's header records (``None``: an unsealed file); header only."""
    return safetensors_metadata(path).get(DIGEST_KEY)


def _checked(path: str | os.PathLike, fix: str) -> tuple[bytes, dict[str, str]]:
    """(bytes, header metadata) of a sealed safetensors file whose digest holds."""
    data = Path(path).read_bytes()
    try:
        header, body = _split_safetensors(data, path)
    except CorruptFileError as error:
        raise CorruptFileError(f"{error}; {fix}") from None
    metadata = dict(header.get("__metadata__") or {})
    recorded = metadata.get(DIGEST_KEY)
    if recorded is None:
        raise CorruptFileError(
            f"{path}: carries no {DIGEST_KEY} (it was not written by this version of "
            f"croft-pipeline), so its bytes cannot be checked; {fix}"
        )
    actual = _content_digest(header, body)
    if actual != recorded:
        raise CorruptFileError(
            f"{path}: its bytes changed after it was written (sha256 {actual[:12]}..., its "
            f"header records {recorded[:12]}...); {fix}"
        )
    return data, metadata


def read_safetensors(path: str | os.PathLike, fix: str) -> bytes:
    """The bytes of a sealed safetensors file, checked against the digest in its header.

    A file whose bytes changed since they were written, or one that is not sealed, is a
    :class:`CorruptFileError` naming the file and ``fix`` (what to do: delete it, rerun a stage).
    """
    return _checked(path, fix)[0]


def load_safetensors(path: str | os.PathLike, fix: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``(tensors, header metadata)`` of a sealed safetensors file (:func:`read_safetensors`)."""
    from safetensors.torch import load

    data, metadata = _checked(path, fix)
    return load(data), metadata


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
