"""What checking every sealed file's digest costs, beside a warm embed stage.

For every sealed safetensors file a finished run left under ``--project``'s data/ (cache chunks,
feature tables, adapters, the CLIP checkpoint), side by side in one run and ``--repeats`` times
each: read it checked (``common.files.load_safetensors``: read, hash, parse) and unchecked (read
and parse, ``safetensors.torch.load`` of the file's bytes): the difference is the checking. Then one warm ``kedro run
--pipeline=embed`` (every row cached: the stage that reads the most sealed bytes), so that the
checking time can be put beside a real stage's wall time.

    make run && python benchmarks/bench_integrity.py      # writes benchmarks/results/integrity.{json,md}
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` as a script

from safetensors.torch import load  # noqa: E402

from benchmarks.common import (  # noqa: E402
    ROOT,
    header_lines,
    machine,
    markdown_table,
    provenance,
    write_results,
)
from croft_pipeline.common.files import load_safetensors, recorded_digest  # noqa: E402


def sealed_files(project: Path) -> dict[str, list[Path]]:
    """Sealed safetensors files under ``project/data`` by kind (first folder below data/0N_*)."""
    kinds: dict[str, list[Path]] = {}
    for path in sorted((project / "data").rglob("*.safetensors")):
        if recorded_digest(path) is None:
            continue
        parts = path.relative_to(project / "data").parts
        kind = "cache chunks" if "cache" in parts else parts[0]
        kinds.setdefault(kind, []).append(path)
    return kinds


def read_seconds(paths: list[Path], checked: bool) -> float:
    started = time.perf_counter()
    for path in paths:
        if checked:
            load_safetensors(path, "benchmark")
        else:
            load(path.read_bytes())
    return time.perf_counter() - started


def warm_embed_seconds(project: Path) -> float:
    kedro = Path(sys.executable).with_name("kedro")
    started = time.perf_counter()
    subprocess.run(
        [str(kedro), "run", "--pipeline=embed"],
        cwd=project,
        check=True,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/integrity")
    args = parser.parse_args()
    info = machine()
    rows = []
    for kind, paths in sealed_files(args.project).items():
        times = {True: [], False: []}
        for _ in range(args.repeats):
            for checked in (False, True):
                times[checked].append(read_seconds(paths, checked))
        checked, unchecked = statistics.median(times[True]), statistics.median(times[False])
        rows.append(
            {
                "files": kind,
                "count": len(paths),
                "MiB": round(sum(p.stat().st_size for p in paths) / 2**20, 1),
                "checked_s": round(checked, 4),
                "unchecked_s": round(unchecked, 4),
                "extra_s": round(checked - unchecked, 4),
            }
        )
    embed = warm_embed_seconds(args.project)
    extra = sum(row["extra_s"] for row in rows)
    result = {
        **provenance(info),
        "files": rows,
        "extra_seconds_all_files": round(extra, 3),
        "warm_embed_seconds": round(embed, 2),
        "extra_share_of_warm_embed": round(extra / embed, 4),
    }
    lines = header_lines("Cost of checking sealed files", result)
    lines += markdown_table(rows, ["files", "count", "MiB", "checked_s", "unchecked_s", "extra_s"])
    lines += [
        f"Checking every sealed file once costs {extra:.3f} s more than reading it unchecked "
        f"(medians of {args.repeats}); a warm `kedro run --pipeline=embed` took {embed:.1f} s "
        f"(one run): {100 * extra / embed:.1f} % of it.",
        "",
    ]
    write_results(args.out, result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
