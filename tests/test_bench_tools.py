"""The measuring tools behind benchmarks/results: peak memory of a process tree, scaling fits."""

from __future__ import annotations

import sys

import pytest

from benchmarks.bench_cost import exponent
from benchmarks.common import peak_rss, provenance
from tests.kedro_harness import REPO_ROOT

HOLD = "import time; block = bytearray({mib} * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(1.0)"


def test_peak_rss_sees_memory_held_by_a_child_of_the_command(tmp_path):
    """A grandchild that holds 300 MiB for a second counts; a command that holds little does not."""
    child = (
        f"import subprocess, sys; subprocess.run([sys.executable, '-c', {HOLD.format(mib=300)!r}])"
    )
    big = peak_rss([sys.executable, "-c", child], tmp_path)
    small = peak_rss([sys.executable, "-c", HOLD.format(mib=1)], tmp_path)
    assert big["returncode"] == small["returncode"] == 0
    assert big["peak_rss_mib"] >= 300 > small["peak_rss_mib"]


def test_peak_rss_reports_a_failing_command(tmp_path):
    failed = peak_rss([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path)
    assert failed["returncode"] == 3 and "boom" in failed["output_tail"]


@pytest.mark.parametrize("k", [0.5, 1.0, 2.0])
def test_exponent_recovers_the_power_of_a_power_law(k):
    sizes = [100, 200, 400, 800]
    assert exponent(sizes, [3.0 * s**k for s in sizes]) == pytest.approx(k, abs=0.01)


def test_provenance_names_the_command_commit_and_load():
    script = str(REPO_ROOT / "benchmarks" / "bench_cost.py")
    header = provenance({"load_average_1min_at_start": 0.5}, [script, "--sections", "embed"])
    assert header["command"] == "python benchmarks/bench_cost.py --sections embed"
    assert header["commit"] != "unknown" and "load_average_1min_at_end" in header["machine"]
