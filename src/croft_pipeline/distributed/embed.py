"""The ``embed.runner: ray`` runner: the planned chunks of ``embed_views`` computed by Ray Data.

One dataset row per planned batch (``embedding._plan``: the same rows per batch as the local
runner, so CPU features are bit-identical); a ``map`` stage decodes and transforms its images
(``embed.ray.decode_cpus`` CPUs a task), and ``map_batches`` encodes each batch in a fixed pool
of CLIP actors (``embed.ray.actors``; one GPU each when the cluster has GPUs, else CPU actors of
``embed.ray.cpus_per_actor`` CPUs and as many torch threads). The driver writes each chunk to
the same :class:`~croft_pipeline.clip.cache.FeatureCache` as soon as its batches are in, so a
run stopped part-way resumes with either runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from croft_pipeline.clip.backend import LoadedClip, encode_pixels
from croft_pipeline.clip.cache import FeatureCache
from croft_pipeline.clip.embedding import (
    ChunkRunner,
    EmbedSettings,
    ImageRef,
    _ViewDataset,
    chunk_meta,
)
from croft_pipeline.clip.params import RayActors
from croft_pipeline.clip.views import ViewRecipe
from croft_pipeline.config.rules import ParameterError
from croft_pipeline.distributed import (
    NotOnNodeError,
    cause_of,
    connect,
    log_placement,
    node_id,
    readable_here,
    require_ray,
)
from croft_pipeline.distributed.jobs import RUNNER

RAY_ACTORS = RayActors()  # the defaults of embed.ray


@dataclass(frozen=True)
class RayEmbed:
    """A :data:`~croft_pipeline.clip.embedding.ChunkRunner` on Ray (``embed.ray``)."""

    actors: int | str = RAY_ACTORS.actors  # auto: one per GPU, else as many as the CPUs hold
    cpus_per_actor: float = RAY_ACTORS.cpus_per_actor
    decode_cpus: float = RAY_ACTORS.decode_cpus

    def pool(self, resources: Mapping[str, float]) -> tuple[int, int]:
        """(actors, GPUs per actor) for a cluster's resources, or a :class:`ParameterError`
        naming ``embed.ray.actors`` when the pool and one decode task do not fit in it."""
        gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        # Ray Data fuses decode into the actors when both ask for the same resources
        fused = not gpus and self.decode_cpus == self.cpus_per_actor
        decode = 0.0 if fused else self.decode_cpus
        if self.actors != "auto":
            size = int(self.actors)
        elif gpus:
            size = gpus
        else:
            size = max(1, int((cpus - decode) // self.cpus_per_actor))
        if size * self.cpus_per_actor + decode > cpus or (gpus and size > gpus):
            rule = (
                f"fit the cluster ({cpus:g} CPUs, {gpus} GPUs) with embed.ray.cpus_per_actor="
                f"{self.cpus_per_actor:g} CPUs (and one GPU, if any) each, beside one decode "
                f"task of embed.ray.decode_cpus={self.decode_cpus:g} (none when the two are "
                "equal on CPUs: Ray Data then decodes in the actors)"
            )
            raise ParameterError("embed.ray.actors", rule, self.actors)
        return size, 1 if gpus else 0

    def __call__(self, loaded, rows, keys, recipe, cache, chunks, batches, settings) -> None:
        """Compute and write ``chunks`` (the arguments of ``embedding.ChunkRunner``)."""
        ray = connect("embed.runner")
        size, gpus = self.pool(ray.cluster_resources())
        items = [
            {
                "batch": number,
                "path": [str(rows[row][0].path) for row in batch],
                "sha256": [rows[row][0].sha256 for row in batch],
                "view": [rows[row][1] for row in batch],
            }
            for number, batch in enumerate(batches)
        ]
        options = {
            "size": size,
            "gpus": gpus,
            "cpus_per_actor": self.cpus_per_actor,
            "decode_cpus": self.decode_cpus,
        }
        plan = (items, recipe, [_put_on_cpu(ray, loaded)], options)  # the model: fetched by actors
        if ray.util.client.ray.is_connected():  # Ray Client: Ray Data runs inside the cluster
            feed = ray.remote(_Feed).options(num_cpus=0).remote(*plan)
            results = _pulled(ray, feed)
        else:
            results = _encoded(*plan).iter_rows()
        try:
            _write_chunks(
                results,
                keys,
                chunks,
                batches,
                cache,
                chunk_meta(loaded, recipe),
                settings,
            )
        except Exception as error:  # an image a node cannot read: its message, not a traceback
            if (missing := cause_of(error, NotOnNodeError)) is None:
                raise
            raise NotOnNodeError(*missing.args) from None


def chunk_runner(embed: Mapping[str, Any]) -> ChunkRunner | None:
    """The runner ``embed.runner`` names: ``None`` (``embed_views``' local default) or Ray's
    (``embed.ray`` is checked either way, as every parameter is)."""
    runner = RUNNER.check("embed.runner", embed.get("runner", "local"))
    options = RayActors.checked(embed.get("ray"), "embed.ray")
    if runner == "local":
        return None
    require_ray("embed.runner")
    return RayEmbed(**options.model_dump())


def _encoded(items: list[dict[str, Any]], recipe: ViewRecipe, model: list[Any], options: dict):
    """The Ray Data pipeline of ``items`` (planned batches): decode, then the actor pool."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # one bar: the driver's, per written row
    context.raise_original_map_exception = True  # a task's own error (NotOnNodeError)
    return (
        ray.data.from_items(items)
        .map(partial(_decode, recipe=recipe), num_cpus=options["decode_cpus"])
        .map_batches(
            _Encoder,
            batch_size=1,  # one planned batch
            compute=ray.data.ActorPoolStrategy(size=options["size"]),
            num_cpus=options["cpus_per_actor"],
            num_gpus=options["gpus"],
            fn_constructor_kwargs={
                "model": model,
                "recipe": recipe,
                "threads": max(1, int(options["cpus_per_actor"])),
            },
            batch_format="numpy",
        )
    )


class _Feed:
    """:func:`_encoded`'s rows for a Ray Client driver, which cannot run Ray Data itself (it has
    no core worker): an actor in the cluster iterates them and the driver pulls them in rounds."""

    def __init__(self, *plan):
        self.rows = iter(_encoded(*plan).iter_rows())  # one execution, pulled in rounds

    def take(self, count: int) -> list[dict[str, Any]]:
        return [row for _, row in zip(range(count), self.rows, strict=False)]


def _pulled(ray, feed, count: int = 8) -> Iterable[dict[str, Any]]:
    """The rows of a :class:`_Feed`, ``count`` at a time, until it has none left."""
    while rows := ray.get(feed.take.remote(count)):
        yield from rows


def _decode(item: dict[str, Any], recipe: ViewRecipe) -> dict[str, Any]:
    """One planned batch's uint8 pixels ``[B, 3, S, S]``, as the local runner's DataLoader makes
    (a path this node cannot read is a :class:`~croft_pipeline.distributed.NotOnNodeError`)."""
    refs = [
        ImageRef(str(sha), Path(readable_here(str(path))))
        for sha, path in zip(item["sha256"], item["path"], strict=True)
    ]
    views = _ViewDataset(
        [(ref, int(view)) for ref, view in zip(refs, item["view"], strict=True)], recipe
    )
    pixels = torch.stack([views[i] for i in range(len(views))])
    return {"batch": item["batch"], "pixels": pixels.numpy()}


class _Encoder:
    """A CLIP actor: the driver's model, on this actor's GPU if it has one; each batch's
    features come back with the actor's node."""

    def __init__(self, model: list[Any], recipe: ViewRecipe, threads: int):
        import ray

        torch.set_num_threads(threads)
        loaded = ray.get(model[0])
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.loaded = replace(loaded, model=loaded.model.to(device), device=device)
        self.recipe = recipe
        self.node = node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pixels = torch.from_numpy(np.array(batch["pixels"][0]))  # a writable copy
        with torch.inference_mode(), self.loaded.autocast():
            pixels = pixels.to(self.loaded.device, non_blocking=True)
            features = encode_pixels(self.loaded, self.recipe.normalize(pixels))
        return {
            "batch": batch["batch"],
            "features": features.numpy()[None],
            "node": np.array([self.node]),
        }


def _put_on_cpu(ray, loaded: LoadedClip):
    """The model in the object store, on the CPU (an actor may have another device or none)."""
    model, device = loaded.model, loaded.device
    try:
        shipped = replace(
            loaded,
            model=model.cpu(),
            device=torch.device("cpu"),
            tokenizer=None,
            preprocess_eval=None,
        )
        return ray.put(shipped)
    finally:
        model.to(device)


def _write_chunks(
    results: Iterable[dict[str, Any]],
    keys: Sequence[str],
    chunks: list[list[int]],
    batches: list[list[int]],
    cache: FeatureCache,
    meta: dict[str, Any],
    settings: EmbedSettings,
) -> None:
    """Write each chunk once all its batches are in (Ray returns them in any order); then log
    the batches' nodes."""
    chunk_of_row = {row: number for number, chunk in enumerate(chunks) for row in chunk}
    pending: dict[int, dict[int, np.ndarray]] = {}
    nodes: list[str] = []
    bar = tqdm(
        total=sum(map(len, chunks)), unit="img", desc="embed (ray)", disable=not settings.progress
    )
    with bar:
        for result in results:
            batch = int(result["batch"])
            number = chunk_of_row[batches[batch][0]]
            parts = pending.setdefault(number, {})
            parts[batch] = np.asarray(result["features"])
            nodes.append(str(result["node"]))
            if sum(map(len, parts.values())) == len(chunks[number]):
                del pending[number]
                features = np.concatenate([parts[i] for i in sorted(parts)])
                chunk_keys = [keys[row] for row in chunks[number]]
                cache.write_chunk(chunk_keys, torch.from_numpy(features), meta)
            bar.update(len(batches[batch]))
    if pending:
        raise RuntimeError(f"Ray returned no features for {len(pending)} chunks")
    log_placement("embed.runner", "batches", nodes)
