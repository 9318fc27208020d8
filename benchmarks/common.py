"""What every benchmark records beside its numbers: machine, command, commit, date, load.

The machine is shared and noisy, so results are ratios measured side by side in one run; the load
average at start and end says how busy it was. ``peak_rss`` runs a command and samples the resident
memory of its whole process tree (workers included), which ``ru_maxrss`` cannot give per stage.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil  # a dependency of dvc (pyproject), so always installed with the project
import torch

from croft_pipeline.common.files import atomic_write_bytes
from croft_pipeline.data.discovery import image_file

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"


def row_paths(project: Path, roots: dict[str, str], rows: Any) -> list[Path]:
    """The image file of each (``root``, ``path``) row of a project table (splits, pairs)."""
    return [
        image_file(roots, str(project), root, path)
        for root, path in zip(rows["root"], rows["path"], strict=True)
    ]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The hardware and software a result was measured on (call at the start of a run)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
    }


def finish(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the load average at the end of the run."""
    return {**info, "load_average_1min_at_end": round(os.getloadavg()[0], 2)}


def commit() -> str:
    """The short git commit of the benchmark's checkout (``+dirty`` with uncommitted changes)."""
    try:
        run = {"cwd": ROOT, "capture_output": True, "text": True}
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=True, **run)
        dirty = subprocess.run(["git", "status", "--porcelain"], **run).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line(argv: Sequence[str] | None = None) -> str:
    """How the benchmark was started, relative to the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = os.path.relpath(argv[0], ROOT) if argv else "?"
    return " ".join(["python", *map(shlex.quote, [script, *argv[1:]])])


def provenance(info: dict[str, Any], argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The header of a results file: machine (with the end load), command, commit, UTC date."""
    return {
        "machine": finish(info),
        "command": command_line(argv),
        "commit": commit(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_results(out: Path, result: dict[str, Any], markdown: str) -> None:
    """``out.json`` and ``out.md``, each written atomically."""
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(result, indent=2) + "\n").encode())
    atomic_write_bytes(out.with_suffix(".md"), markdown.encode())


def header_lines(title: str, result: dict[str, Any]) -> list[str]:
    """The markdown title and the provenance lines of a results file."""
    m = result["machine"]
    return [
        f"# {title}",
        "",
        f"Command: `{result['command']}` at commit {result['commit']}, {result['date']}.  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU {m['gpu'] or 'none'}, "
        f"torch {m['torch']}; 1-min load average {m['load_average_1min_at_start']} at start, "
        f"{m['load_average_1min_at_end']} at end (the machine is shared).",
        "",
    ]


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """A markdown table of ``rows`` (dicts) in ``columns`` order."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return [*lines, ""]


def peak_rss(
    command: Sequence[str], cwd: Path, env: dict[str, str] | None = None, interval: float = 0.05
) -> dict[str, Any]:
    """Run ``command``; its wall time, exit code and the peak RSS (MiB) of its process tree.

    Sampled every ``interval`` seconds, so a spike shorter than that can be missed; the sum over
    the tree counts pages shared between processes once per process (an upper bound).
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    root = psutil.Process(process.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(_rss(p) for p in tree))
            except psutil.NoSuchProcess:
                pass
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0].decode(errors="replace")
    done.set()
    sampler.join()
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "returncode": process.returncode,
        "peak_rss_mib": round(peak / 2**20, 1),
        "output_tail": output[-2000:],
    }


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
