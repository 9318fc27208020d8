"""Embedding throughput and cache benefit of the embed pipeline's core (croft_pipeline.clip).

(a) ``throughput_ratio``: images/s of ``embed_views`` (decode files in DataLoader workers,
    center view, encode, write cache chunks) on a cold cache, divided by images/s of the model's
    bare forward pass on the same images pre-decoded into one tensor (same model, same batch;
    measured right before and right after the embed run, averaged, as the machine is shared).
(b) ``warm_speedup``: wall time of that cold run divided by a second run with nothing changed
    (every row comes from the cache).

    python benchmarks/bench_embed.py                  # writes benchmarks/results/embed.{json,md}
    python benchmarks/bench_embed.py --threads 1 --workers 1 --out /tmp/embed

Images: every PNG under ``--images`` (default: the rendered EmojiShift downstream root of
``--project``, data/01_raw/emojishift; rendered into benchmarks/.work/ when absent). Model: the
``clip`` block of the project's conf/base/parameters_clip.yml, with random weights when its
checkpoint does not exist yet (throughput does not depend on the weights). One run each.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` as a script

from benchmarks.common import ROOT, WORK, machine  # noqa: E402
from croft_pipeline.clip.backend import encode_pixels, load_clip  # noqa: E402
from croft_pipeline.clip.embedding import EmbedSettings, ImageRef, embed_views  # noqa: E402
from croft_pipeline.clip.views import CENTER  # noqa: E402
from croft_pipeline.common.compute import torch_threads  # noqa: E402
from croft_pipeline.common.files import atomic_write_bytes, sha256_file  # noqa: E402
from croft_pipeline.config.loader import parameters  # noqa: E402
from croft_pipeline.data.images import load_rgb  # noqa: E402


def find_images(folder: Path, limit: int | None) -> list[ImageRef]:
    if not any(folder.rglob("*.png")):
        folder = render_emojishift()
    paths = sorted(folder.rglob("*.png"))[:limit]
    return [ImageRef(sha256_file(path), path) for path in paths]


def render_emojishift() -> Path:
    from croft_pipeline.data.emojishift import render_emojishift as render

    params = parameters(ROOT)["ingest"]
    target = WORK / "emojishift"
    render(params["emojishift"], target, WORK / "emojishift_pretrain")
    return target


def predecode(loaded, images: list[ImageRef]) -> torch.Tensor:
    """The center views of all images, preprocessed, as one float tensor."""
    return torch.stack([loaded.preprocess_eval(load_rgb(ref.path)) for ref in images])


def bare_forward(loaded, pixels: torch.Tensor, batch_size: int) -> float:
    """Images/s of encode_pixels on pre-decoded, preprocessed tensors (one warm-up batch)."""
    with torch.inference_mode(), loaded.autocast():
        encode_pixels(loaded, pixels[:batch_size])
        started = time.perf_counter()
        for start in range(0, len(pixels), batch_size):
            encode_pixels(loaded, pixels[start : start + batch_size])
        seconds = time.perf_counter() - started
    return len(pixels) / seconds


def timed_embed(loaded, images, cache: Path, settings: EmbedSettings) -> float:
    started = time.perf_counter()
    embed_views(loaded, images, loaded.view_recipe(CENTER), 1, cache, settings)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--project",
        type=Path,
        default=ROOT,
        help="project whose conf, images and checkpoint to use",
    )
    parser.add_argument(
        "--images", type=Path, default=None, help="default: <project>/data/01_raw/emojishift"
    )
    parser.add_argument("--limit", type=int, default=None, help="use at most this many images")
    parser.add_argument("--batch-size", type=int, default=None, help="default: embed.batch_size")
    parser.add_argument("--workers", type=int, default=None, help="default: embed.num_workers")
    parser.add_argument(
        "--threads",
        default=None,
        help="torch CPU threads: a number or auto (default: clip.num_threads)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/embed")
    args = parser.parse_args()

    project = args.project.resolve()
    resolved = parameters(project)
    clip, embed = resolved["clip"], resolved["embed"]
    settings = EmbedSettings(
        batch_size=args.batch_size or int(embed["batch_size"]),
        chunk_rows=int(embed["chunk_rows"]),
        num_workers=int(embed["num_workers"]) if args.workers is None else args.workers,
        progress=False,
    )
    checkpoint = project / clip["pretrained"]
    pretrained = str(checkpoint) if checkpoint.is_file() else None
    info = machine()
    with torch_threads(args.threads if args.threads is not None else clip.get("num_threads")):
        loaded = load_clip(
            clip["model_name"], pretrained, device=args.device, precision=clip["precision"]
        )
        images = find_images(args.images or project / "data/01_raw/emojishift", args.limit)
        cache = WORK / "embed_cache"
        shutil.rmtree(cache, ignore_errors=True)
        pixels = predecode(loaded, images)
        bare_before = bare_forward(loaded, pixels, settings.batch_size)
        cold = timed_embed(loaded, images, cache, settings)
        bare_after = bare_forward(loaded, pixels, settings.batch_size)
        warm = timed_embed(loaded, images, cache, settings)
        bare = (bare_before + bare_after) / 2
        threads = torch.get_num_threads()
    shutil.rmtree(cache, ignore_errors=True)
    result = {
        "throughput_ratio": round(len(images) / cold / bare, 3),
        "warm_speedup": round(cold / warm, 1),
        "images": len(images),
        "bare_forward_images_per_s": round(bare, 1),
        "bare_forward_images_per_s_before_after": [round(bare_before, 1), round(bare_after, 1)],
        "embed_cold_images_per_s": round(len(images) / cold, 1),
        "embed_cold_seconds": round(cold, 3),
        "embed_warm_seconds": round(warm, 3),
        "model_name": clip["model_name"],
        "weights": "trained checkpoint" if pretrained else "random (checkpoint absent)",
        "precision": clip["precision"],
        "device": str(loaded.device),
        "batch_size": settings.batch_size,
        "chunk_rows": settings.chunk_rows,
        "num_workers": settings.num_workers,
        "torch_threads": threads,
        "machine": {**info, "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "command": " ".join(
            ["python", *map(shlex.quote, [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])]
        ),
        "targets": {"throughput_ratio": ">= 0.8", "warm_speedup": ">= 20"},
    }
    write_results(result, args.out)
    print(json.dumps(result, indent=2))


def write_results(result: dict, out: Path) -> None:
    atomic_write_bytes(out.with_suffix(".json"), (json.dumps(result, indent=2) + "\n").encode())
    m = result["machine"]
    lines = [
        "# Embedding benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, device {result['device']}; "
        f"1-min load average {m['load_average_1min_at_start']} at start, {m['load_average_1min_at_end']} at end "
        "(the machine is shared).  ",
        f"Model: {result['model_name']} ({result['weights']}, {result['precision']}), batch {result['batch_size']}, "
        f"{result['num_workers']} DataLoader workers, {result['torch_threads']} torch threads; "
        f"{result['images']} EmojiShift PNG images, center view.",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| (a) embed images/s (cold cache, decode + encode + write) | {result['embed_cold_images_per_s']} | |",
        f"| (a) bare forward images/s (pre-decoded tensors; mean of before/after "
        f"{result['bare_forward_images_per_s_before_after']}) | {result['bare_forward_images_per_s']} | |",
        f"| (a) throughput_ratio | **{result['throughput_ratio']}** | >= 0.8 |",
        f"| (b) cold run / warm run (s) | {result['embed_cold_seconds']} / {result['embed_warm_seconds']} | |",
        f"| (b) warm_speedup | **{result['warm_speedup']}x** | >= 20x |",
        "",
    ]
    atomic_write_bytes(out.with_suffix(".md"), "\n".join(lines).encode())


if __name__ == "__main__":
    main()
