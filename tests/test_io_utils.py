"""Sealed safetensors files: equal tensors and metadata give equal bytes in any process, and a
changed byte anywhere is an error naming the file."""

import struct
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from croft_pipeline.common.files import (
    DIGEST_KEY,
    CorruptFileError,
    load_safetensors,
    read_safetensors,
    recorded_digest,
    save_safetensors,
    seal_safetensors,
    tensors_digest,
)

WRITE = """
import sys, torch
from croft_pipeline.common.files import save_safetensors
tensors = {"b": torch.ones(3), "a": torch.arange(6.0).reshape(2, 3), "c": torch.zeros(1, 2)}
metadata = {key: str(i) for i, key in enumerate("pqrstuvwxyz")}
save_safetensors(sys.argv[1], tensors, metadata)
"""


def test_files_are_byte_identical_across_processes(tmp_path):
    """safetensors writes its header maps in a per-process order (eleven metadata keys: the odds
    that four processes agree by chance are negligible), so this fails without the sorting."""
    paths = [tmp_path / f"{seed}.safetensors" for seed in range(4)]
    for seed, path in enumerate(paths):
        env = {"PYTHONHASHSEED": str(seed), "PATH": ""}
        subprocess.run([sys.executable, "-c", WRITE, str(path)], check=True, env=env)
    assert len({path.read_bytes() for path in paths}) == 1


TENSORS = {"w": torch.randn(4, 5), "bias": torch.randn(5).to(torch.bfloat16)}
METADATA = {"stamp": "abc", "model_name": "x"}
FIX = "delete it and rerun"


def test_a_sealed_file_loads_as_the_original_with_its_digest(tmp_path):
    raw = save(TENSORS, metadata=METADATA)
    sealed = seal_safetensors(raw)
    (header_size,) = struct.unpack("<Q", sealed[:8])
    assert (
        header_size % 8 == 0 and sealed[8 + header_size :] == raw[-len(sealed) + 8 + header_size :]
    )
    assert seal_safetensors(sealed) == sealed
    path = save_safetensors(tmp_path / "t.safetensors", TENSORS, METADATA)
    assert path.read_bytes() == sealed
    loaded = load_file(path)  # still a plain safetensors file for any reader
    assert all(torch.equal(loaded[k], TENSORS[k]) for k in TENSORS)
    with safe_open(str(path), "pt") as handle:
        digest = handle.metadata()[DIGEST_KEY]
        assert handle.metadata() == {**METADATA, DIGEST_KEY: digest}
    assert recorded_digest(path) == digest == tensors_digest(TENSORS, METADATA)
    tensors, metadata = load_safetensors(path, FIX)
    assert all(torch.equal(tensors[k], TENSORS[k]) for k in TENSORS) and metadata[DIGEST_KEY]
    assert tensors_digest({**TENSORS, "w": TENSORS["w"] + 1}, METADATA) != digest


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["first tensor byte", "last tensor byte", "metadata value"])
def test_a_flipped_byte_is_an_error_naming_the_file_and_the_fix(tmp_path, where):
    path = save_safetensors(tmp_path / "t.safetensors", TENSORS, METADATA)
    data = path.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    offset = {
        "first tensor byte": 8 + header_size,
        "last tensor byte": len(data) - 1,
        "metadata value": data.index(b'"abc"') + 1,
    }[where]
    _flip(path, offset)
    load_file(path)  # still a valid safetensors file: only the digest tells
    with pytest.raises(CorruptFileError, match=f"{path}: its bytes changed.*; {FIX}"):
        read_safetensors(path, FIX)


def test_an_unsealed_or_truncated_file_is_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(save(TENSORS))
    with pytest.raises(CorruptFileError, match=f"{plain}: carries no {DIGEST_KEY}.*; {FIX}"):
        load_safetensors(plain, FIX)
    assert recorded_digest(plain) is None
    cut = save_safetensors(tmp_path / "cut.safetensors", TENSORS)
    cut.write_bytes(cut.read_bytes()[:5])
    with pytest.raises(CorruptFileError, match=f"{cut}: not a safetensors file"):
        read_safetensors(cut, FIX)


def test_a_full_disk_names_the_folder_and_leaves_the_old_file(tmp_path):
    import errno

    from croft_pipeline.common.files import atomic_write, atomic_write_bytes

    path = atomic_write_bytes(tmp_path / "sub" / "out.json", b"old")

    def fill_the_disk(tmp):
        tmp.write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        OSError, match=rf"no space left on the device of {path.parent} while writing out.json"
    ):
        atomic_write(path, fill_the_disk)
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temporary file left
