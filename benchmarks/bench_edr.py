"""Cost of CRoFT's EDR term per training step: double backpropagation vs the closed form.

For each feature dim D it times, on random features (medians over repeats):
* ``edr``: the EDR term alone (value + backward to the rows and both adapters), in the
  faithful setup-II form (one shared δ, Σexp(cos) energy, rows = [ID; generated] = 2N) and in the
  clean form (lse energy, separate gradients, ID and generated rows separately);
* ``step``: one whole faithful training step (generator step + main step) with each form, and
  without the EDR term (lambda2 = 0) for reference.
It also records how far the two forms differ (value and gradients), which must be < 1e-5.

    python benchmarks/bench_edr.py                       # CPU, writes benchmarks/results/edr.{json,md}
    python benchmarks/bench_edr.py --device cuda --threads 1 --out benchmarks/results/edr.cuda

Each configuration runs once per ``--threads`` value (torch intra-op CPU threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` as a script

from benchmarks.common import cpu_model  # noqa: E402
from croft_pipeline.common.files import atomic_write_bytes  # noqa: E402
from croft_pipeline.methods import build_method
from croft_pipeline.methods.energy_grad import (
    EnergyGradSpec,
    energy_grad_sq_autograd,
    energy_grad_sq_closed,
)

FORMS = {"autograd": energy_grad_sq_autograd, "closed_form": energy_grad_sq_closed}
SPECS = {
    "faithful": EnergyGradSpec("expcos", "mean", "sum", True, False, 0.2, 0.5),
    "clean": EnergyGradSpec("lse", "mean", "sum", False, True, 0.2, 0.5, logit_scale=100.0),
}
STEP_CONFIG = {
    "lr": 0.002,
    "momentum": 0.9,
    "weight_decay": 0.1,
    "epochs": 1,
    "warmup_epochs": 0,
    "warmup_lr": 1e-5,
    "batch_size": 32,
    "ratio": 0.2,
    "ratio_text": 0.5,
    "lambda1": 15.0,
    "lambda2": 10.0,
    "gen_step": 1,
    "edr_setup": "setup2",
    "edr_branch": "auto",
    "edr_delta": 1e-4,
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_seconds(
    fn: Callable[[], None], device: torch.device, repeats: int, warmup: int
) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def edr_inputs(batch: int, classes: int, dim: int, device: torch.device, gen: torch.Generator):
    def leaf(*shape, scale=1.0, eye=False):
        value = scale * torch.randn(*shape, generator=gen)
        value = value + torch.eye(dim) if eye else value
        return value.to(device).requires_grad_()

    rows = torch.nn.functional.normalize(torch.randn(2 * batch, dim, generator=gen), dim=1)
    text = torch.nn.functional.normalize(torch.randn(classes, dim, generator=gen), dim=1)
    return [
        rows.to(device).requires_grad_(),
        text.to(device),
        leaf(dim, dim, scale=0.01, eye=True),
        leaf(dim, dim, scale=0.01, eye=True),
    ]


def edr_term(mode: str, form: str, inputs: list[torch.Tensor]) -> torch.Tensor:
    rows, text, wi, wt = inputs
    fn, spec = FORMS[form], SPECS[mode]
    if mode == "faithful":
        return fn(rows, text, wi + 1e-4, wt + 1e-4, spec)
    half = rows.shape[0] // 2  # clean: ‖g_I‖² + ‖g_c‖²
    return fn(rows[:half], text, wi, wt, spec) + fn(rows[half:], text, wi, wt, spec)


def max_rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(
        float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))
        for x, y in zip(a, b, strict=True)
    )


def bench_dim(dim: int, args: argparse.Namespace, device: torch.device) -> list[dict]:
    gen = torch.Generator().manual_seed(dim)
    inputs = edr_inputs(args.batch, args.classes, dim, device, gen)
    grad_of = [inputs[0], inputs[2], inputs[3]]
    rows = []
    for mode in SPECS:
        values, grads = {}, {}
        for form in FORMS:
            value = edr_term(mode, form, inputs)
            values[form] = value.detach()
            grads[form] = torch.autograd.grad(value, grad_of)

            def run(form=form, mode=mode):
                torch.autograd.grad(edr_term(mode, form, inputs), grad_of)

            rows.append(
                {
                    "what": "edr",
                    "mode": mode,
                    "form": form,
                    "dim": dim,
                    "ms": 1e3 * median_seconds(run, device, args.repeats, args.warmup),
                }
            )
        diff = max_rel_diff(
            [values["closed_form"], *grads["closed_form"]], [values["autograd"], *grads["autograd"]]
        )
        for row in rows[-2:]:
            row["max_rel_diff_closed_vs_autograd"] = diff
    text = torch.randn(args.classes, dim, generator=gen)
    batch = torch.randn(args.batch, dim, generator=gen).to(device)
    labels = (torch.arange(args.batch) % args.classes).to(device)
    for form, lambda2 in (("autograd", 10.0), ("closed_form", 10.0), ("closed_form", 0.0)):
        config = {**STEP_CONFIG, "device": str(device), "edr_grad": form, "lambda2": lambda2}
        method = build_method("croft_faithful", config, text, 100.0, seed=0)
        method._make_optimizers()
        rows.append(
            {
                "what": "step",
                "mode": "faithful",
                "form": form if lambda2 else "no_edr",
                "dim": dim,
                "ms": 1e3
                * median_seconds(
                    lambda m=method: m._train_step(batch, labels), device, args.repeats, args.warmup
                ),
            }
        )
    return rows


def with_threads(threads: int, fn: Callable, *args):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


def machine(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "load_average_1min_at_start": os.getloadavg()[0],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def markdown(report: dict) -> str:
    m, a = report["machine"], report["arguments"]
    lines = [
        "# EDR cost per training step: double backprop vs closed form",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m['cpu']} ({m['cpu_count']} CPUs, torch {m['torch']}, "
        f"device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}; 1-min load at start {m['load_average_1min_at_start']:.2f})  ",
        f"Batch N = {a['batch']} (EDR rows 2N = {2 * a['batch']}), K = {a['classes']} classes; "
        f"median of {a['repeats']} runs after {a['warmup']} warm-up runs.",
        "",
        "| threads | D | what | mode | autograd ms | closed form ms | speed-up | max rel. diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = report["results"]
    for threads, dim in ((t, d) for t in a["threads"] for d in a["dims"]):
        for what, mode in (("edr", "faithful"), ("edr", "clean"), ("step", "faithful")):
            key = (threads, dim, what, mode)
            sel = {
                r["form"]: r for r in rows if (r["threads"], r["dim"], r["what"], r["mode"]) == key
            }
            auto, closed = sel["autograd"]["ms"], sel["closed_form"]["ms"]
            diff = sel["closed_form"].get("max_rel_diff_closed_vs_autograd")
            label = "EDR term (fwd+bwd)" if what == "edr" else "whole training step"
            speedup = f"{auto / closed:.1f}x"
            if "no_edr" in sel:  # the EDR share of the step: step minus the step without EDR
                none = sel["no_edr"]["ms"]
                label += f" (no EDR: {none:.2f} ms)"
                speedup += f"; EDR share +{auto - none:.2f} vs +{closed - none:.2f} ms"
            lines.append(
                f"| {threads} | {dim} | {label} | {mode} | {auto:.2f} | {closed:.2f} | {speedup} | "
                f"{'' if diff is None else f'{diff:.1e}'} |"
            )
    lines += [
        "",
        "Reading it: compare the two forms within a row. The CPUs were shared with other processes",
        "(1-min load above); with 2 threads such contention makes OpenMP wait and the timings",
        "erratic, which is why `train.num_threads` defaults to 1. `max rel. diff` is the largest",
        "difference of the EDR value and its gradients (rows, both adapters) between the two forms,",
        "relative to the largest magnitude, in float32.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/edr")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    report = {
        "command": "python "
        + " ".join(
            shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine(device),
        "arguments": vars(args),
        "results": [
            {"threads": threads, **row}
            for threads in args.threads
            for dim in args.dims
            for row in with_threads(threads, bench_dim, dim, args, device)
        ],
    }
    atomic_write_bytes(f"{args.out}.json", (json.dumps(report, indent=2) + "\n").encode())
    atomic_write_bytes(f"{args.out}.md", markdown(report).encode())
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
