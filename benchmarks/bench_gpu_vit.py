"""ViT-B-16 image-encoding throughput on a GPU (random weights, 224 px): images/s per precision,
and the fraction of the GPU's bf16 peak it reaches (FLOPs per image × images/s ÷ peak).

    python benchmarks/bench_gpu_vit.py          # writes benchmarks/results/embed_gpu_vit.{json,md}
    python benchmarks/bench_gpu_vit.py --device cpu --batch-size 2 --batches 1 --out /tmp/vit  # smoke

Standalone: needs CUDA by default (exits 0 with a message where there is none) and no network
(random weights). It encodes synthetic 224x224 batches through the same backend the embed pipeline uses
(croft_pipeline.clip.backend.encode_pixels), after warm-up, synchronising the device around
each timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from croft_pipeline.clip.backend import encode_pixels, load_clip
from croft_pipeline.common.files import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(loaded, batch_size: int, batches: int, warmup: int) -> float:
    size = loaded.preprocess_cfg["size"]
    size = size if isinstance(size, int) else size[0]
    pixels = torch.randn(batch_size, 3, size, size, device=loaded.device)
    with torch.inference_mode(), loaded.autocast():
        for _ in range(warmup):
            encode_pixels(loaded, pixels)
        sync(loaded.device)
        started = time.perf_counter()
        for _ in range(batches):
            encode_pixels(loaded, pixels)
        sync(loaded.device)
    return batch_size * batches / (time.perf_counter() - started)


PEAK_BF16_DENSE_TFLOPS = {  # vendor datasheets, dense (no sparsity) bf16 tensor-core peaks
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.5,
    "H100 NVL": 835.0,
    "A100": 312.0,
    "L40S": 362.1,
}


def peak_tflops(gpu_name: str | None) -> float | None:
    """The bf16 dense peak of ``gpu_name`` (longest matching key), None when not in the table."""
    if not gpu_name:
        return None
    matches = [key for key in PEAK_BF16_DENSE_TFLOPS if key.lower() in gpu_name.lower()]
    return PEAK_BF16_DENSE_TFLOPS[max(matches, key=len)] if matches else None


def flops_per_image(loaded) -> float:
    """Forward FLOPs of one image through the image tower (torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    size = loaded.preprocess_cfg["size"]
    size = size if isinstance(size, int) else size[0]
    pixels = torch.randn(1, 3, size, size, device=loaded.device)
    counter = FlopCounterMode(display=False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel is not counted
    try:
        with torch.no_grad(), counter:
            encode_pixels(loaded, pixels)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/embed_gpu_vit")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu_vit: no CUDA device here; run it on a GPU machine. Nothing written.")
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    rows, flops = {}, None
    for precision in args.precisions.split(","):
        loaded = load_clip(args.model, None, device=args.device, precision=precision)
        flops = flops or flops_per_image(loaded)
        rows[precision] = round(
            images_per_second(loaded, args.batch_size, args.batches, args.warmup), 1
        )
        del loaded
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    peak = peak_tflops(gpu)
    roofline = {
        precision: round(rate * flops / (peak * 1e12), 4) if peak else None
        for precision, rate in rows.items()
    }
    result = {
        "model_name": args.model,
        "gflops_per_image": round(flops / 1e9, 2),
        "peak_bf16_dense_tflops": peak,
        "fraction_of_bf16_peak": roofline,
        "weights": "random",
        "image_size": 224,
        "batch_size": args.batch_size,
        "images_per_s": rows,
        "device": str(args.device),
        "gpu": gpu,
        "torch": torch.__version__,
        "command": " ".join(
            ["python", *map(shlex.quote, [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])]
        ),
    }
    atomic_write_bytes(
        args.out.with_suffix(".json"), (json.dumps(result, indent=2) + "\n").encode()
    )
    lines = [
        "# ViT-B-16 image encoding on a GPU",
        "",
        f"Command: `{result['command']}` on {result['gpu'] or result['device']} (torch {result['torch']}); random weights, "
        f"224 px, batch {args.batch_size}, {args.batches} timed batches after {args.warmup} warm-up.",
        "",
        f"{result['gflops_per_image']} GFLOP per image (forward, FlopCounterMode); bf16 dense peak "
        f"{peak} TFLOP/s (datasheet).",
        "",
        "| precision | images/s | fraction of the bf16 peak |",
        "| --- | --- | --- |",
        *[f"| {p} | {v} | {roofline[p]} |" for p, v in rows.items()],
        "",
    ]
    atomic_write_bytes(args.out.with_suffix(".md"), "\n".join(lines).encode())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
