"""A method's tuning grid, its points fitted one by one (``sequential``: each a stack of one)
vs as one stack (``batched``: what ``fit_selected`` does), by the one training loop.

For each trained method of ``train.methods`` it fits the method's default grid
(``train.grids``, 6 points) on one seed's worth of features, with the default configuration
(``methods.params.TrainedParams``: 15 epochs, batch 32, ...), once each way, interleaved in this process
(``--repeats`` rounds of sequential then batched: the machine is shared, so compare within a
round). It records each way's seconds (median over rounds), the speed-up, whether both kept
the same point with the same best epochs and validation accuracies, and the largest difference of
the weights over every grid point (float32 reassociation in batched matmuls).

    python benchmarks/bench_grid.py                  # writes benchmarks/results/grid.{json,md}
    python benchmarks/bench_grid.py --methods linear_probe --repeats 1 --out /tmp/grid

Features: synthetic, of the default protocol's shape, since no cached features are needed to
time training: class-clustered Gaussians with D = the embedded CLIP's embed dim (conf
``clip.model_name``; CroftRN-MiniLM-64: 256), K = 12 ID classes (EmojiShift), N = 560 training
images per seed (docs/benchmark.md) with ``embed.n_views`` (10) views, 190 validation images.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from bench_embed import machine  # noqa: I001  (benchmarks/ is sys.path[0] as a script; from common)

from croft_pipeline.common.files import atomic_write_bytes
from croft_pipeline.config.loader import parameters
from croft_pipeline.methods import METHODS, EvalSet, NonFiniteLossError, TrainSet, build_method
from croft_pipeline.methods.params import method_config, method_grids
from croft_pipeline.methods.selection import fit_or_error, fit_points, grid_points
from croft_pipeline.pretraining.checkpoint import model_config_text

ROOT = Path(__file__).resolve().parents[1]
CLASSES, N_TRAIN, N_VAL = 12, 560, 190


def synthetic(dim: int, views: int, seed: int = 0) -> tuple[torch.Tensor, float, TrainSet, EvalSet]:
    """Text features, logit scale and train/val sets of the default protocol's shape."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(CLASSES, dim, generator=gen)
    text = centers + 0.5 * torch.randn(CLASSES, dim, generator=gen)

    def sample(n: int, extra: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % CLASSES
        noise = 1.5 * torch.randn(n, *extra, dim, generator=gen)
        return centers[labels].view(n, *([1] * len(extra)), dim) + noise, labels

    train, val = sample(N_TRAIN, (views,)), sample(N_VAL, ())
    return text, 21.6, TrainSet(*train), EvalSet(*val)  # 21.6: the embedded CLIP's logit scale


def fit_grid(name, config, grid, data, seed, runner):
    text, logit_scale, train, val = data
    methods = [
        build_method(name, {**config, **point}, text, logit_scale, seed)
        for point in grid_points(grid)
    ]
    start = time.perf_counter()
    if runner == "batched":
        fits = fit_points(methods, train, val)
    else:
        fits = [fit_or_error(method, train, val) for method in methods]
    return time.perf_counter() - start, methods, fits


def kept_point(fits) -> int:
    """The selection rule of ``fit_selected``: best val accuracy, first on ties."""
    scores = [-1.0 if isinstance(f, NonFiniteLossError) else f.best_val_accuracy for f in fits]
    return scores.index(max(scores))


def compare(sequential, batched) -> dict:
    (_, seq_methods, seq_fits), (_, bat_methods, bat_fits) = sequential, batched
    same_outcome = all(
        (str(a) == str(b))
        if isinstance(a, NonFiniteLossError)
        else (a.best_epoch, a.best_val_accuracy) == (b.best_epoch, b.best_val_accuracy)
        for a, b in zip(seq_fits, bat_fits, strict=True)
    )
    deltas = [
        float((ma.state_dict()[k] - mb.state_dict()[k]).abs().max())
        for ma, mb, fit in zip(seq_methods, bat_methods, seq_fits, strict=True)
        if not isinstance(fit, NonFiniteLossError)
        for k in ma.state_dict()
    ]
    return {
        "same_kept_point": kept_point(seq_fits) == kept_point(bat_fits),
        "same_best_epochs_and_val_accuracies": same_outcome,
        "diverged_points": sum(isinstance(f, NonFiniteLossError) for f in seq_fits),
        "max_abs_weight_diff": max(deltas, default=0.0),
    }


def bench_method(name: str, train_params: dict, data, args) -> dict:
    config = {**method_config(train_params, name), "device": args.device}
    grid = method_grids(train_params, [name])[name]
    seconds: dict[str, list[float]] = {"sequential": [], "batched": []}
    runs = {}
    for _ in range(args.repeats):  # interleaved: each round times both runners back to back
        for runner in seconds:
            runs[runner] = fit_grid(name, config, grid, data, args.seed, runner)
            seconds[runner].append(runs[runner][0])
    seq, bat = (statistics.median(seconds[r]) for r in ("sequential", "batched"))
    return {
        "method": name,
        "points": len(grid_points(grid)),
        "grid": grid,
        "sequential_seconds": round(seq, 3),
        "batched_seconds": round(bat, 3),
        "speedup": round(seq / bat, 2),
        "speedup_per_round": [round(s / b, 2) for s, b in zip(*seconds.values(), strict=True)],
        "seconds_per_round": {r: [round(t, 3) for t in ts] for r, ts in seconds.items()},
        **compare(runs["sequential"], runs["batched"]),
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def markdown(report: dict) -> str:
    m, d = report["machine"], report["data"]
    lines = [
        "# Tuning grid: sequential fits vs one batched stack",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}, commit {report['git_commit']}  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, device {m['device']}"
        f"{', ' + m['gpu'] if m.get('gpu') else ''}, {report['torch_threads']} torch thread(s); "
        f"1-min load average {m['load_average_1min_at_start']} at start, "
        f"{m['load_average_1min_at_end']} at end (the machine is shared).  ",
        f"Data: synthetic features of the default shape: D = {d['dim']}, K = {d['classes']}, "
        f"N = {d['n_train']} training images x {d['views']} views, {d['n_val']} validation "
        f"images; default configuration ({d['epochs']} epochs, batch {d['batch_size']}), each "
        f"method's default grid; median of {report['repeats']} interleaved rounds.",
        "",
        "| method | points | sequential s | batched s | speed-up (per round) | same kept point, "
        "epochs, val acc | max abs weight diff |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["results"]:
        same = r["same_kept_point"] and r["same_best_epochs_and_val_accuracies"]
        rounds = ", ".join(f"{s:g}" for s in r["speedup_per_round"])
        lines.append(
            f"| {r['method']} | {r['points']} | {r['sequential_seconds']:.2f} | "
            f"{r['batched_seconds']:.2f} | **{r['speedup']:.2f}x** ({rounds}) | "
            f"{'yes' if same else 'NO'} | {r['max_abs_weight_diff']:.1e} |"
        )
    lines += [
        "",
        "Reading it: a stack trains a method's grid points as one stack of parameters",
        "(methods/batched.py), so the per-step Python and kernel-launch overhead is paid once per",
        "step instead of once per point, and the small matmuls become batched ones. The weight",
        "difference is float32 rounding (batched matmuls sum in another order), compounded over",
        "the epochs; selection (kept point, best epochs, validation accuracies) is identical.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=None, help="default: train.methods")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/grid")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = parameters(ROOT)
    train_params = params["train"]
    names = [n for n in args.methods or train_params["methods"] if METHODS[n].trains]
    dim = int(json.loads(model_config_text(params["clip"]["model_name"]))["embed_dim"])
    views = int(params["embed"]["n_views"])
    info = {**machine(), "device": args.device}
    data = synthetic(dim, views)
    results = [bench_method(name, train_params, data, args) for name in names]
    common = method_config(train_params, "croft_clean")  # the shared loop settings
    report = {
        "command": " ".join(
            [
                "python",
                *map(shlex.quote, [os.path.relpath(sys.argv[0], ROOT), *(argv or sys.argv[1:])]),
            ]
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": {**info, "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "data": {
            "kind": "synthetic",
            "dim": dim,
            "classes": CLASSES,
            "n_train": N_TRAIN,
            "views": views,
            "n_val": N_VAL,
            "epochs": common["epochs"],
            "batch_size": common["batch_size"],
        },
        "results": results,
    }
    atomic_write_bytes(
        args.out.with_suffix(".json"), (json.dumps(report, indent=2) + "\n").encode()
    )
    atomic_write_bytes(args.out.with_suffix(".md"), markdown(report).encode())
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
