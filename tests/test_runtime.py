"""Device and CPU-thread rules shared by every stage (croft_pipeline.common.compute)."""

import os

import pytest
import torch

from croft_pipeline.common.compute import DeviceError, free_cores, resolve_device, torch_threads


def test_auto_device_is_cuda_only_when_present():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_without_cuda_is_a_clear_error():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")


def test_a_device_name_torch_does_not_know_is_named():
    with pytest.raises(DeviceError, match="'gpu0' is not a torch device"):
        resolve_device("gpu0")


def test_auto_threads_use_the_cores_other_work_leaves_free(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    for load, expected in [(0.0, 4), (1.2, 4), (2.6, 2), (3.6, 1), (9.0, 1)]:
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert free_cores() == expected
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
