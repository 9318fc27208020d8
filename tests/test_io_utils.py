"""Byte-reproducible safetensors files: equal tensors and metadata give equal bytes in any process."""

import struct
import subprocess
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from croft_pipeline.common.files import canonical_safetensors, save_safetensors

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


def test_canonical_file_loads_as_the_original(tmp_path):
    tensors = {"w": torch.randn(4, 5), "bias": torch.randn(5).to(torch.bfloat16)}
    metadata = {"stamp": "abc", "model_name": "x"}
    raw = save(tensors, metadata=metadata)
    canonical = canonical_safetensors(raw)
    (header_size,) = struct.unpack("<Q", canonical[:8])
    assert (
        header_size % 8 == 0
        and canonical[8 + header_size :] == raw[-len(canonical) + 8 + header_size :]
    )
    assert canonical_safetensors(canonical) == canonical
    path = save_safetensors(tmp_path / "t.safetensors", tensors, metadata)
    assert path.read_bytes() == canonical
    loaded = load_file(path)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == metadata
