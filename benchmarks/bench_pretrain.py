"""Pretraining the default CLIP: where a step's time goes, what makes it faster, at what accuracy.

* ``steps``: one training step (augment, forward, backward, optimizer) of the configured model
  and batch, per variant, interleaved in rounds (the machine is shared: ratios within one run):
  channels-last (the default) vs contiguous memory, 1 vs all threads, batch 256 vs 128 (per
  image), ``torch.compile`` (its compile time reported apart), and whether bf16 autocast is on.
* ``zero_shot``: full pretraining runs with ``--zero-shot-steps`` steps (each with its cosine
  schedule; ``--lr`` and warm-up as configured unless given), each checkpoint's zero-shot
  accuracy on the project's downstream test images, as ``describe_clip_model`` measures it,
  with a 95% interval from the per-image hits (a shorter schedule is only kept when it is not
  worse than the configured one).

    python benchmarks/bench_pretrain.py --project /path/to/a/project/after/make/run
    # -> benchmarks/results/pretrain.{json,md}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import open_clip
import pandas as pd
import torch
from open_clip.loss import ClipLoss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` as a script

from benchmarks.common import (  # noqa: E402
    ROOT,
    WORK,
    header_lines,
    machine,
    markdown_table,
    provenance,
    row_paths,
    write_results,
)
from croft_pipeline.clip.backend import load_clip  # noqa: E402
from croft_pipeline.clip.checkpoint import save_checkpoint  # noqa: E402
from croft_pipeline.clip.default_model import pretrain_config  # noqa: E402
from croft_pipeline.clip.pretrain import (  # noqa: E402
    PretrainConfig,
    _optimizer,
    _text_feature_fn,
    augment,
    bf16_supported,
    build_pair_data,
    create_trainable_model,
    image_size_of,
    pretrain,
)
from croft_pipeline.clip.zeroshot import zero_shot_accuracy  # noqa: E402
from croft_pipeline.config import parameters  # noqa: E402
from croft_pipeline.pipelines.pretrain.nodes import _zero_shot_rows  # noqa: E402

VARIANTS = {  # name -> (channels_last, threads: None = all cores, batch factor, compile)
    "default (channels-last, all threads)": (True, None, 1, False),
    "contiguous memory": (False, None, 1, False),
    "1 thread": (True, 1, 1, False),
    "batch x2 (per image)": (True, None, 2, False),
    "torch.compile": (True, None, 1, True),
}


class Pairs:
    """The project's pretraining pairs and downstream zero-shot images (after a default run)."""

    def __init__(self, project: Path):
        self.project = project
        self.params = parameters(project)
        primary = project / "data/03_primary"
        self.roots = json.loads((primary / "dataset_roots.json").read_text())
        pairs = pd.read_parquet(primary / "pretrain_pairs.parquet")
        self.paths = self._paths(pairs)
        self.captions = pairs["caption"].tolist()
        self.splits = pd.read_parquet(primary / "splits.parquet")
        self.id_classes = json.loads((primary / "id_classes.json").read_text())

    def _paths(self, rows: pd.DataFrame) -> list[Path]:
        return row_paths(self.project, self.roots, rows)

    def zero_shot(self, checkpoint: Path) -> dict[str, Any]:
        clip, settings = self.params["clip"], self.params["pretrain"]["zero_shot"]
        loaded = load_clip(clip["model_name"], str(checkpoint))
        rows = _zero_shot_rows(self.splits, settings["splits"])
        paths = self._paths(rows)
        accuracy = zero_shot_accuracy(
            loaded,
            paths,
            rows["label"].tolist(),
            rows["domain"].tolist(),
            self.id_classes,
            clip["templates"],
            progress=False,
        )
        half_width = 1.96 * math.sqrt(accuracy["mean"] * (1 - accuracy["mean"]) / len(rows))
        return {**accuracy, "images": len(rows), "mean_95_half_width": round(half_width, 4)}


def step_seconds(model, data, tokenizer, config, variant, rounds_steps: int) -> float:
    """Seconds per step of ``variant`` over ``rounds_steps`` steps (after one warm-up step)."""
    channels_last, _, _, compiled = variant
    model.train().requires_grad_(True)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model.visual.to(memory_format=memory)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    text = _text_feature_fn(model, data.captions, tokenizer, config, torch.device("cpu"))
    optimizer = _optimizer(model, config)
    encode = torch.compile(model.encode_image) if compiled else model.encode_image
    loss_fn, generator = ClipLoss(), torch.Generator().manual_seed(0)

    def one_step() -> None:
        pairs = torch.randint(len(data.image_of_pair), (config.batch_size,), generator=generator)
        pixels = augment(
            data.images[data.image_of_pair[pairs]],
            preprocess["mean"],
            preprocess["std"],
            config,
            generator,
        ).contiguous(memory_format=memory)
        features = encode(pixels, normalize=True)
        loss = loss_fn(features, text(data.caption_of_pair[pairs]), model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    one_step()  # warm-up (for the compiled variant: the compilation)
    started = time.perf_counter()
    for _ in range(rounds_steps):
        one_step()
    return (time.perf_counter() - started) / max(1, rounds_steps)


def bench_steps(pairs: Pairs, config: PretrainConfig, rounds: int, steps: int) -> list[dict]:
    model_name = pairs.params["clip"]["model_name"]
    model = create_trainable_model(model_name, config.seed)
    data = build_pair_data(pairs.paths, pairs.captions, image_size_of(model), progress=False)
    tokenizer = open_clip.get_tokenizer(model_name)
    cores = os.cpu_count() or 1
    compile_seconds = None
    if any(v[3] for v in VARIANTS.values()):  # compile once, outside the timed rounds
        started = time.perf_counter()
        step_seconds(model, data, tokenizer, config, VARIANTS["torch.compile"], 0)
        compile_seconds = round(time.perf_counter() - started, 1)
    per_image: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, variant in VARIANTS.items():
            batch = config.batch_size * variant[2]
            torch.set_num_threads(variant[1] or cores)
            seconds = step_seconds(
                model, data, tokenizer, replace(config, batch_size=batch), variant, steps
            )
            per_image[name].append(seconds / batch)
    torch.set_num_threads(cores)
    base = min(per_image[next(iter(VARIANTS))])
    return [
        {
            "variant": name,
            "ms_per_image_best": round(min(values) * 1e3, 3),
            "relative_to_default": round(min(values) / base, 3),
            "note": f"compile {compile_seconds} s" if VARIANTS[name][3] else "",
        }
        for name, values in per_image.items()
    ]


def bench_zero_shot(pairs: Pairs, config: PretrainConfig, steps_list, lr, threads) -> list[dict]:
    model_name = pairs.params["clip"]["model_name"]
    rows = []
    torch.set_num_threads(threads)
    for steps in steps_list:
        warmup = min(config.warmup_steps, max(1, steps // 10))
        run_config = replace(config, steps=steps, warmup_steps=warmup, lr=lr or config.lr)
        model = create_trainable_model(model_name, run_config.seed)
        data = build_pair_data(pairs.paths, pairs.captions, image_size_of(model), progress=False)
        tokenizer = open_clip.get_tokenizer(model_name)
        result = pretrain(model, data, tokenizer, run_config, torch.device("cpu"), progress=False)
        checkpoint = WORK / f"pretrain_{steps}_{run_config.lr:g}.safetensors"
        save_checkpoint(result.model, checkpoint, {"model_name": model_name})
        rows.append(
            {
                "steps": steps,
                "lr": run_config.lr,
                "warmup_steps": warmup,
                "threads": threads,
                "seconds": round(result.seconds, 1),
                "final_loss": round(sum(result.losses[-25:]) / len(result.losses[-25:]), 3),
                "zero_shot": pairs.zero_shot(checkpoint),
            }
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = header_lines("Pretraining the default CLIP", result)
    lines += [
        f"bf16 autocast on this machine: **{'on' if result['bf16_on'] else 'off'}** "
        "(CPU without AVX512-BF16/AMX: autocast stays disabled).",
        "",
    ]
    if "steps" in result:
        lines += [
            "## One step, per image",
            "",
            *markdown_table(result["steps"], list(result["steps"][0])),
        ]
    if "zero_shot" in result:
        table = [
            {**{k: v for k, v in row.items() if k != "zero_shot"},
             "zero-shot mean": f"{row['zero_shot']['mean']:.4f} ± {row['zero_shot']['mean_95_half_width']:.3f}"}
            for row in result["zero_shot"]
        ]  # fmt: skip
        lines += ["## Steps against zero-shot accuracy", "", *markdown_table(table, list(table[0]))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="a project after a default run")
    parser.add_argument("--sections", default="steps,zero_shot")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--zero-shot-steps", default="1000,500")
    parser.add_argument("--lr", type=float, default=None, help="default: pretrain.lr")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pretrain")
    args = parser.parse_args(argv)
    info = machine()
    pairs = Pairs(args.project.resolve())
    config = pretrain_config(pairs.params["pretrain"])
    result: dict[str, Any] = {"bf16_on": bool(config.bf16 and bf16_supported(torch.device("cpu")))}
    sections = args.sections.split(",")
    if "steps" in sections:
        result["steps"] = bench_steps(pairs, config, args.rounds, args.steps_per_round)
    if "zero_shot" in sections:
        steps_list = [int(s) for s in args.zero_shot_steps.split(",")]
        result["zero_shot"] = bench_zero_shot(pairs, config, steps_list, args.lr, args.threads)
    result = {**provenance(info, argv and ["benchmarks/bench_pretrain.py", *argv]), **result}
    result["config"] = {k: v for k, v in vars(config).items()}
    write_results(args.out, result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
