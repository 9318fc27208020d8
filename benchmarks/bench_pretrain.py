"""Pretraining the default CLIP, recipe against recipe: time, zero-shot accuracy, the seed spread.

For each model × pretraining seed, side by side in one run: a cold pretraining (no trunk-feature
cache) through the project's own ``ensure_checkpoint``, its time split into decoding, trunk
features and training where the recipe has them, the precision that ran, the checkpoint's
sha256, and its zero-shot accuracy on the project's downstream test images as
``describe_clip_model`` measures it (per style, and the mean with a 95% interval from the
per-image hits). Models:

* the configured default (``clip.model_name``, ``locked_towers``: projections on a locked
  ImageNet trunk and MiniLM) with the configured ``pretrain`` settings;
* ``CroftRN-MiniLM-64`` (``from_scratch``, the default until this benchmark), with the settings it
  shipped with (:data:`LEGACY`); bf16 autocast where the CPU has it, as it ran then.

    python benchmarks/bench_pretrain.py --project /path/to/a/project/after/make/run
    # -> benchmarks/results/pretrain.{json,md}
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/bench_pretrain.py ...
    # as on a CPU without AVX-512 (and so without bf16); recorded in the results
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

import pandas as pd
import torch

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
from croft_pipeline.clip.zeroshot import zero_shot_accuracy  # noqa: E402
from croft_pipeline.config.loader import parameters  # noqa: E402
from croft_pipeline.pipelines.pretrain.nodes import ZERO_SHOT_SPLITS, _zero_shot_rows  # noqa: E402
from croft_pipeline.pretraining.contrastive import PretrainConfig, bf16_supported  # noqa: E402
from croft_pipeline.pretraining.default_model import ensure_checkpoint, pretrain_config  # noqa: E402

LEGACY_MODEL = "CroftRN-MiniLM-64"
# the from-scratch default's settings as shipped (conf/base/parameters_pretrain.yml before the
# locked-towers default); the other settings are the configured ones
LEGACY = {"steps": 1000, "batch_size": 128, "lr": 1e-3, "warmup_steps": 100, "bf16": True}
ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


class Pairs:
    """The project's pretraining pairs and downstream zero-shot images (after a default run)."""

    def __init__(self, project: Path):
        self.project = project
        self.params = parameters(project)
        primary = project / "data/03_primary"
        self.roots = json.loads((primary / "dataset_roots.json").read_text())
        pairs = pd.read_parquet(primary / "pretrain_pairs.parquet")
        self.paths = row_paths(project, self.roots, pairs)
        self.shas = pairs["sha256"].tolist()
        self.captions = pairs["caption"].tolist()
        self.splits = pd.read_parquet(primary / "splits.parquet")
        self.id_classes = json.loads((primary / "id_classes.json").read_text())

    def zero_shot(self, model_name: str, checkpoint: Path) -> dict[str, Any]:
        clip = self.params["clip"]
        loaded = load_clip(model_name, str(checkpoint))
        rows = _zero_shot_rows(self.splits, ZERO_SHOT_SPLITS)
        accuracy = zero_shot_accuracy(
            loaded,
            row_paths(self.project, self.roots, rows),
            rows["label"].tolist(),
            rows["domain"].tolist(),
            self.id_classes,
            clip["templates"],
            progress=False,
        )
        half_width = 1.96 * math.sqrt(accuracy["mean"] * (1 - accuracy["mean"]) / len(rows))
        return {**accuracy, "images": len(rows), "mean_95_half_width": round(half_width, 4)}


def recipe_config(model_name: str, configured: PretrainConfig, default_model: str):
    return configured if model_name == default_model else replace(configured, **LEGACY)


def bench_recipes(
    pairs: Pairs, models: list[str], seeds: list[int], bf16: bool
) -> list[dict[str, Any]]:
    configured = pretrain_config(pairs.params["pretrain"])
    default_model = pairs.params["clip"]["model_name"]
    rows = []
    for model_name in models:
        for seed in seeds:
            config = recipe_config(model_name, configured, default_model)
            config = replace(config, seed=seed, bf16=config.bf16 and bf16)
            target = WORK / f"pretrain_{model_name}_seed{seed}.safetensors"
            started = time.perf_counter()
            report = ensure_checkpoint(
                model_name,
                pairs.paths,
                pairs.shas,
                pairs.captions,
                target,
                config,
                device="cpu",
                force=True,
                progress=False,
                feature_cache=None,
            )
            total = time.perf_counter() - started
            rows.append(
                {
                    "model": model_name,
                    "recipe": report["recipe"],
                    "seed": seed,
                    "precision": report["precision"],
                    "steps": config.steps,
                    "seconds_total": round(total, 1),
                    "seconds_training": report["seconds"],
                    "seconds_trunk_features": report.get("trunk_feature_seconds"),
                    "final_loss": round(report["final_loss"], 3),
                    "checkpoint_sha256": report["checkpoint_sha256"],
                    "zero_shot": pairs.zero_shot(model_name, target),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def spread(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: the mean over seeds of zero-shot accuracy (per style and overall), its range."""
    table = []
    for model in dict.fromkeys(row["model"] for row in rows):
        mine = [row for row in rows if row["model"] == model]
        means = [row["zero_shot"]["mean"] for row in mine]
        styles = [
            k for k in mine[0]["zero_shot"] if k not in ("mean", "images", "mean_95_half_width")
        ]
        table.append(
            {
                "model": model,
                "seeds": len(mine),
                **{s: round(sum(r["zero_shot"][s] for r in mine) / len(mine), 3) for s in styles},
                "mean": round(sum(means) / len(means), 3),
                "seed range": f"{min(means):.3f}–{max(means):.3f}",
                "pretraining s (mean)": round(sum(r["seconds_total"] for r in mine) / len(mine), 1),
            }
        )
    return table


def markdown(result: dict[str, Any]) -> str:
    lines = header_lines("Pretraining the default CLIP: recipe against recipe", result)
    isa = result["isa"]
    lines += [
        f"CPU flags: AVX512-BF16 {'yes' if isa['avx512_bf16'] else 'no'}; "
        f"{', '.join(f'{k}={v}' for k, v in isa['variables'].items()) or 'no ISA limit set'}; "
        f"bf16 autocast for from_scratch: **{'on' if isa['bf16_autocast'] else 'off'}**.",
        "",
        "## Mean over pretraining seeds",
        "",
        *markdown_table(result["spread"], list(result["spread"][0])),
        "## Every run",
        "",
    ]
    table = [
        {
            **{k: v for k, v in row.items() if k not in ("zero_shot", "checkpoint_sha256")},
            "zero-shot mean": f"{row['zero_shot']['mean']:.3f} ± {row['zero_shot']['mean_95_half_width']:.3f}",
            "sha256": row["checkpoint_sha256"][:12],
        }
        for row in result["recipes"]
    ]
    lines += markdown_table(table, list(table[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="a project after a default run")
    parser.add_argument("--models", default=None, help=f"default: the configured,{LEGACY_MODEL}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=None, help="default: pretrain.num_threads")
    parser.add_argument(
        "--bf16", choices=("auto", "off"), default="auto", help="off: as without bf16"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pretrain")
    args = parser.parse_args(argv)
    info = machine()
    pairs = Pairs(args.project.resolve())
    models = (args.models or f"{pairs.params['clip']['model_name']},{LEGACY_MODEL}").split(",")
    if args.threads:
        pairs.params["pretrain"]["num_threads"] = args.threads
    seeds = [int(s) for s in args.seeds.split(",")]
    result: dict[str, Any] = {
        "isa": {
            "avx512_bf16": bf16_supported(torch.device("cpu")),
            "variables": {k: os.environ[k] for k in ISA_VARIABLES if k in os.environ},
            "bf16_autocast": args.bf16 == "auto" and bf16_supported(torch.device("cpu")),
        },
        "recipes": bench_recipes(pairs, models, seeds, args.bf16 == "auto"),
    }
    result["spread"] = spread(result["recipes"])
    result = {**provenance(info, argv and ["benchmarks/bench_pretrain.py", *argv]), **result}
    write_results(args.out, result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
