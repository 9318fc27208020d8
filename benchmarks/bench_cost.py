"""What every stage costs, side by side in one run: training, embedding, memory, scaling.

Sections (``--sections``, default all):

* ``training``: a method fitted on cached features (this project) against the official recipe's
  encoder in the loop (every step decodes its images, draws a fresh random resized crop + flip and
  encodes them with the frozen CLIP), same model, same epochs, same images, same optimizer; for
  ``croft_clean`` and ``linear_probe`` (one grid point: each grid's first), the first seed's splits.
* ``embed``: per image, the decode cost (read + decode + center view, one process) and the encode
  cost (bare forward, 1 thread and all cores); the **ceiling** = cores / (decode + 1-thread
  encode), the throughput if every core did useful work at its best per-core rate; then
  ``embed_views`` (cold cache) for several worker × thread settings, each as a fraction of the
  bare forward pass and of the ceiling.
* ``memory``: each pipeline run by Kedro in a copy of the project, its wall time and the peak
  resident memory of its process tree (``pretrain`` with ``--pretrain-steps`` steps and
  ``force``: its peak does not grow after the first steps; the default's 1000 steps are timed
  in benchmarks/results/pretrain.json).
* ``scaling``: ``embed`` (center views of 1×, 2×, 4× the images: EmojiShift rendered with 1, 2,
  4 variants per glyph) and ``train`` (one job of ``croft_clean`` and of ``linear_probe`` with
  their grids, on features of the default shape with 1×, 2×, 4× the training images), each
  point in a fresh process: time, peak RSS, and the fitted exponent of time ~ size^k.

    python benchmarks/bench_cost.py --project /path/to/a/project/after/make/run
    # -> benchmarks/results/cost.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks.common` as a script

from benchmarks.bench_embed import find_images  # noqa: E402
from benchmarks.common import (  # noqa: E402
    ROOT,
    WORK,
    header_lines,
    machine,
    markdown_table,
    peak_rss,
    provenance,
    row_paths,
    write_results,
)
from croft_pipeline.clip.backend import encode_pixels, load_clip  # noqa: E402
from croft_pipeline.clip.embedding import EmbedSettings, ImageRef, embed_views  # noqa: E402
from croft_pipeline.clip.views import AUGMENT, CENTER  # noqa: E402
from croft_pipeline.common.features import FeatureTable  # noqa: E402
from croft_pipeline.config.loader import parameters  # noqa: E402
from croft_pipeline.data.images import load_rgb  # noqa: E402
from croft_pipeline.methods import build_method  # noqa: E402
from croft_pipeline.methods.base import EvalSet, TrainSet, accuracy  # noqa: E402
from croft_pipeline.methods.feature_sets import (  # noqa: E402
    class_text_features,
    eval_set,
    seed_rows,
    train_set,
)
from croft_pipeline.methods.params import method_config  # noqa: E402
from croft_pipeline.methods.trainer import batch_indices, epoch_lr  # noqa: E402
from croft_pipeline.methods.tuning import FitJob, run_fit  # noqa: E402
from croft_pipeline.pipeline_registry import PIPELINE_ORDER  # noqa: E402
from croft_pipeline.pipelines.embed.nodes import _augment_args  # noqa: E402

SECTIONS = ("training", "embed", "memory", "scaling")
PIPELINES = PIPELINE_ORDER
TRAINING_METHODS = ("croft_clean", "linear_probe")
SCALES = (1, 2, 4)


# --- training: cached features vs the encoder in the loop ----------------------------------------


class ProjectData:
    """The project's splits, feature tables, classes and parameters (after a default run)."""

    def __init__(self, project: Path):
        self.project = project
        self.params = parameters(project)
        primary = project / "data/03_primary"
        self.splits = pd.read_parquet(primary / "splits.parquet")
        self.seed = int(self.splits["seed"].min())  # the first seed's splits
        self.roots = json.loads((primary / "dataset_roots.json").read_text())
        self.id_classes = json.loads((primary / "id_classes.json").read_text())
        feature = project / "data/04_feature"
        self.center = FeatureTable.load(feature / "image_features_center.safetensors")
        self.views = FeatureTable.load(feature / "image_features_train_views.safetensors")
        text = FeatureTable.load(feature / "text_features.safetensors")
        self.text, self.logit_scale = class_text_features(text, self.id_classes)

    def loaded_clip(self):
        clip = self.params["clip"]
        return load_clip(clip["model_name"], clip["pretrained"], base_dir=self.project)

    def paths(self, rows: pd.DataFrame) -> list[Path]:
        return row_paths(self.project, self.roots, rows)


def fit_in_loop(method, loaded, paths, shas, labels: torch.Tensor, val: EvalSet, recipe):
    """The shared training loop with the official recipe's input: every step decodes, augments and
    encodes its batch (a fresh random view per image and epoch) with the frozen CLIP."""
    config = method.config
    method._make_optimizers()
    sampler = torch.Generator().manual_seed(method.seed)
    epochs, n = int(config["epochs"]), len(labels)
    encode_seconds = 0.0
    for epoch in range(epochs):
        method._set_lr(epoch_lr(config, epoch))
        order = torch.randperm(n, generator=sampler)
        method.module.train()
        for idx in batch_indices(order, int(config["batch_size"])):
            started = time.perf_counter()
            pixels = torch.stack(
                [recipe.pixels(load_rgb(paths[i]), shas[i], epoch) for i in idx.tolist()]
            )
            with torch.no_grad():  # autograd may not save inference-mode tensors
                x = encode_pixels(loaded, recipe.normalize(pixels))
            encode_seconds += time.perf_counter() - started
            method._train_step(x, labels[idx])  # fit_stack's step (its guard's checks aside)
        method.module.eval()
        accuracy(method.logits(val.features), val.labels)  # the per-epoch validation pass
    return encode_seconds


def bench_training(data: ProjectData) -> list[dict[str, Any]]:
    loaded = data.loaded_clip()
    train_rows = seed_rows(data.splits, data.seed, "train")
    paths, shas = data.paths(train_rows), train_rows["sha256"].tolist()
    train = train_set(data.splits, data.seed, data.views)
    val = eval_set(data.splits, data.seed, "val", data.center)
    recipe = loaded.view_recipe(AUGMENT, **_augment_args(data.params["embed"]))
    rows = []
    for name in TRAINING_METHODS:
        config = method_config(data.params["train"], name)
        grid = data.params["train"]["grids"].get(name, {})
        config.update({key: values[0] for key, values in grid.items()})  # one grid point
        cached_method = build_method(name, config, data.text, data.logit_scale, data.seed)
        started = time.perf_counter()
        cached_method.fit(train, val)
        cached = time.perf_counter() - started
        loop_method = build_method(name, config, data.text, data.logit_scale, data.seed)
        started = time.perf_counter()
        encode = fit_in_loop(loop_method, loaded, paths, shas, train.labels, val, recipe)
        in_loop = time.perf_counter() - started
        rows.append(
            {
                "method": name,
                "images": len(paths),
                "epochs": int(config["epochs"]),
                "cached_seconds": round(cached, 2),
                "encoder_in_loop_seconds": round(in_loop, 2),
                "of_which_decode_augment_encode_seconds": round(encode, 2),
                "speedup_cached": round(in_loop / cached, 1),
            }
        )
    return rows


# --- embed: decode and encode costs, the ceiling, and the embed runner against both ---------------


def per_image_decode(recipe, images: list[ImageRef]) -> float:
    started = time.perf_counter()
    for ref in images:
        recipe.pixels(load_rgb(ref.path), ref.sha256, 0)
    return (time.perf_counter() - started) / len(images)


def per_image_encode(loaded, recipe, pixels: torch.Tensor, batch: int, threads: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            encode_pixels(loaded, recipe.normalize(pixels[:batch]))  # warm-up
            started = time.perf_counter()
            for start in range(0, len(pixels), batch):
                encode_pixels(loaded, recipe.normalize(pixels[start : start + batch]))
            return (time.perf_counter() - started) / len(pixels)
    finally:
        torch.set_num_threads(before)


def bench_embed(data: ProjectData, settings_grid: list[tuple[int, int]]) -> dict[str, Any]:
    loaded = data.loaded_clip()
    recipe = loaded.view_recipe(CENTER)
    images = find_images(data.project / "data/01_raw/emojishift", None)
    batch = int(data.params["embed"]["batch_size"])
    cores = os.cpu_count() or 1
    decode = per_image_decode(recipe, images)
    pixels = torch.stack([recipe.pixels(load_rgb(ref.path)) for ref in images])
    encode_1 = per_image_encode(loaded, recipe, pixels, batch, 1)
    encode_all = per_image_encode(loaded, recipe, pixels, batch, cores)
    ceiling = cores / (decode + encode_1)
    bare = 1 / encode_all
    runs = []
    for workers, threads in settings_grid:
        cache = WORK / "cost_embed_cache"
        shutil.rmtree(cache, ignore_errors=True)
        settings = EmbedSettings(batch_size=batch, num_workers=workers, progress=False)
        torch.set_num_threads(threads)
        started = time.perf_counter()
        embed_views(loaded, images, recipe, 1, cache, settings)
        rate = len(images) / (time.perf_counter() - started)
        shutil.rmtree(cache, ignore_errors=True)
        runs.append(
            {
                "num_workers": workers,
                "torch_threads": threads,
                "images_per_s": round(rate, 1),
                "of_bare_forward": round(rate / bare, 3),
                "of_ceiling": round(rate / ceiling, 3),
            }
        )
    torch.set_num_threads(cores)
    return {
        "images": len(images),
        "batch_size": batch,
        "decode_ms_per_image": round(decode * 1e3, 3),
        "encode_ms_per_image_1_thread": round(encode_1 * 1e3, 3),
        f"encode_ms_per_image_{cores}_threads": round(encode_all * 1e3, 3),
        "bare_forward_images_per_s": round(bare, 1),
        "ceiling_images_per_s": round(ceiling, 1),
        "ceiling_rule": "cores / (decode + 1-thread encode per image)",
        "runs": runs,
    }


# --- memory: each pipeline's peak resident memory -------------------------------------------------


def bench_memory(project: Path, pretrain_steps: int) -> list[dict[str, Any]]:
    """Each pipeline, in order, in a copy of ``project`` with this checkout's conf and code (its
    outputs replace the copy's; the embedding cache starts empty)."""
    copy = WORK / "cost_project"
    shutil.rmtree(copy, ignore_errors=True)
    ignore = shutil.ignore_patterns("mlruns", "mlflow.db", ".venv", ".git", ".dvc-storage", "cache")
    shutil.copytree(project, copy, ignore=ignore, symlinks=True)
    shutil.rmtree(copy / "conf")
    shutil.copytree(ROOT / "conf", copy / "conf")  # this checkout's configuration and code
    kedro = [sys.executable, "-m", "kedro", "run"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    rows = []
    for pipeline in PIPELINES:
        extra = []
        if pipeline == "pretrain":
            extra = ["--params", f"pretrain.steps={pretrain_steps},pretrain.force=true"]
        measured = peak_rss([*kedro, f"--pipeline={pipeline}", *extra], copy, env)
        if measured["returncode"] != 0:
            raise RuntimeError(
                f"kedro run --pipeline={pipeline} failed:\n{measured['output_tail']}"
            )
        rows.append(
            {
                "pipeline": pipeline,
                "seconds": measured["seconds"],
                "peak_rss_mib": measured["peak_rss_mib"],
                "note": f"{pretrain_steps} steps (forced)" if extra else "",
            }
        )
    shutil.rmtree(copy, ignore_errors=True)
    return rows


# --- scaling: time and memory against the number of images ----------------------------------------


def scaled_emojishift(params: dict[str, Any], variants: int) -> Path:
    """EmojiShift rendered with ``variants`` renders per glyph (cycling scales and shifts)."""
    from croft_pipeline.data.emojishift import render_emojishift

    config = json.loads(json.dumps(params["ingest"]["emojishift"]))
    base = config["variants"]
    config["variants"] = [
        {
            "scale": round(base[i % len(base)]["scale"] - 0.03 * (i // len(base)), 3),
            "shift": [round(v + 0.02 * (i // len(base)), 3) for v in base[i % len(base)]["shift"]],
        }
        for i in range(variants)
    ]
    target = WORK / f"scale_v{variants}"
    render_emojishift(config, target / "main", target / "pretrain")
    return target / "main"


def child_embed(project: Path, folder: Path) -> dict[str, Any]:
    data = ProjectData(project)
    loaded = data.loaded_clip()
    images = find_images(folder, None)
    cache = WORK / f"scale_cache_{os.getpid()}"
    settings = EmbedSettings(
        batch_size=int(data.params["embed"]["batch_size"]),
        num_workers=int(data.params["embed"]["num_workers"]),
        progress=False,
    )
    started = time.perf_counter()
    embed_views(loaded, images, loaded.view_recipe(CENTER), 1, cache, settings)
    seconds = time.perf_counter() - started
    shutil.rmtree(cache, ignore_errors=True)
    return {"images": len(images), "seconds": round(seconds, 2)}


def child_train(project: Path, scale: int) -> dict[str, Any]:
    """One job per method with its grid, on Gaussian features of the default run's shape with
    ``scale`` times its training images (a fit's cost depends on shapes, not on values)."""
    data = ProjectData(project)
    train = train_set(data.splits, data.seed, data.views)
    val = eval_set(data.splits, data.seed, "val", data.center)
    generator = torch.Generator().manual_seed(scale)
    n, views, dim = train.features.shape
    features = torch.randn(n * scale, views, dim, generator=generator)
    labels = train.labels.repeat(scale)
    rows = {}
    torch.set_num_threads(1)
    for name in TRAINING_METHODS:
        job = FitJob(
            name=name,
            seed=data.seed,
            config=method_config(data.params["train"], name),
            grid=data.params["train"]["grids"].get(name, {}),
            text_features=data.text,
            logit_scale=data.logit_scale,
            train=TrainSet(features, labels),
            val=val,
        )
        started = time.perf_counter()
        run_fit(job)
        rows[name] = round(time.perf_counter() - started, 2)
    return {"train_images": n * scale, "seconds_by_method": rows}


def run_child(args: list[str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", *args]
    measured = peak_rss(command, ROOT, {**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if measured["returncode"] != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{measured['output_tail']}")
    result = json.loads(measured["output_tail"].strip().splitlines()[-1])
    return {**result, "peak_rss_mib": measured["peak_rss_mib"]}


def exponent(sizes: list[float], seconds: list[float]) -> float:
    """k in time ~ size^k (least squares on the log-log points)."""
    return round(float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0]), 2)


def bench_scaling(project: Path, params: dict[str, Any]) -> dict[str, Any]:
    embed_rows, train_rows = [], []
    for scale in SCALES:
        folder = scaled_emojishift(params, scale)
        embed_rows.append({"scale": scale, **run_child(["embed", str(project), str(folder)])})
        train_rows.append({"scale": scale, **run_child(["train", str(project), str(scale)])})
    images = [row["images"] for row in embed_rows]
    embed_fit = exponent(images, [row["seconds"] for row in embed_rows])
    train_fit = {
        name: exponent(
            [row["train_images"] for row in train_rows],
            [row["seconds_by_method"][name] for row in train_rows],
        )
        for name in TRAINING_METHODS
    }
    memory_fit = {
        "embed": exponent(images, [row["peak_rss_mib"] for row in embed_rows]),
        "train": exponent(
            [row["train_images"] for row in train_rows], [row["peak_rss_mib"] for row in train_rows]
        ),
    }
    return {
        "embed": embed_rows,
        "train": train_rows,
        "time_exponent": {"embed": embed_fit, **{f"train {k}": v for k, v in train_fit.items()}},
        "memory_exponent": memory_fit,
    }


# --- results ----------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    lines = header_lines("What every stage costs", result)
    if "training" in result:
        lines += [
            "## Training: cached features vs the encoder in the loop",
            "",
            *markdown_table(
                result["training"],
                [
                    "method",
                    "images",
                    "epochs",
                    "cached_seconds",
                    "encoder_in_loop_seconds",
                    "of_which_decode_augment_encode_seconds",
                    "speedup_cached",
                ],
            ),
        ]
    if "embed" in result:
        e = result["embed"]
        lines += [
            "## Embed: decode, encode, ceiling",
            "",
            f"{e['images']} images, batch {e['batch_size']}: decode {e['decode_ms_per_image']} ms, "
            f"encode {e['encode_ms_per_image_1_thread']} ms per image on 1 thread; bare forward "
            f"{e['bare_forward_images_per_s']} images/s on all cores; ceiling "
            f"{e['ceiling_images_per_s']} images/s ({e['ceiling_rule']}).",
            "",
            *markdown_table(
                e["runs"],
                ["num_workers", "torch_threads", "images_per_s", "of_bare_forward", "of_ceiling"],
            ),
        ]
    if "memory" in result:
        lines += [
            "## Each pipeline: wall time and peak resident memory (process tree)",
            "",
            *markdown_table(result["memory"], ["pipeline", "seconds", "peak_rss_mib", "note"]),
        ]
    if "scaling" in result:
        s = result["scaling"]
        train_rows = [
            {
                "scale": r["scale"],
                "train_images": r["train_images"],
                "peak_rss_mib": r["peak_rss_mib"],
                **r["seconds_by_method"],
            }
            for r in s["train"]
        ]
        lines += [
            "## Scaling with the number of images",
            "",
            *markdown_table(s["embed"], ["scale", "images", "seconds", "peak_rss_mib"]),
            *markdown_table(
                train_rows, ["scale", "train_images", *TRAINING_METHODS, "peak_rss_mib"]
            ),
            f"Time exponents (time ~ size^k): {s['time_exponent']}; peak-memory exponents: "
            f"{s['memory_exponent']}.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="a project after a default run")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--pretrain-steps", type=int, default=30)
    parser.add_argument(
        "--embed-settings",
        default="2x2,2x1,1x1,1x2,0x2",
        help="DataLoader workers x torch threads for the embed runs",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cost")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, project, value = args.child
        result = child_embed(Path(project), Path(value)) if kind == "embed" else None
        result = result or child_train(Path(project), int(value))
        print(json.dumps(result))
        return 0
    project = args.project.resolve()
    info = machine()
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    data = ProjectData(project)
    result: dict[str, Any] = {}
    started = time.perf_counter()
    if "training" in sections:
        result["training"] = bench_training(data)
    if "embed" in sections:
        grid = [tuple(int(v) for v in item.split("x")) for item in args.embed_settings.split(",")]
        result["embed"] = bench_embed(data, grid)
    if "memory" in sections:
        result["memory"] = bench_memory(project, args.pretrain_steps)
    if "scaling" in sections:
        result["scaling"] = bench_scaling(project, data.params)
    result = {**provenance(info, argv and ["benchmarks/bench_cost.py", *argv]), **result}
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["project"] = str(project)
    write_results(args.out, result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
