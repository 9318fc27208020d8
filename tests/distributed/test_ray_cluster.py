"""Beyond one machine: a multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``,
a head without CPUs and one-CPU worker raylets). ``embed`` (Ray Data) and the train sweep spread
over its nodes, as the runners' logged node ids show, and give the local runners' results: the
same cache chunks byte for byte, the same weights and summaries; also when a worker node is
removed mid-run. An image path a node cannot read is named with the node."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from croft_pipeline.clip.backend import load_clip
from croft_pipeline.clip.embedding import EmbedSettings, ImageRef, embed_views
from croft_pipeline.common.compute import torch_threads
from croft_pipeline.common.files import sha256_file
from croft_pipeline.distributed import NotOnNodeError, TaskLostError
from croft_pipeline.distributed import embed as ray_embed
from croft_pipeline.distributed.embed import RayEmbed
from croft_pipeline.methods import tuning
from croft_pipeline.pipelines.train import nodes
from tests.distributed.conftest import (
    NO_TRACKING,
    OBJECT_STORE,
    SEEDS,
    SWEEP,
    alive_nodes,
    assert_same_fits,
    placements,
    ray_cluster,
    ray_or_skip,
)
from tests.distributed.dying import stalls_once
from tests.kedro_harness import chunk_digests, load_params
from tests.methods.synthetic import CLASSES

pytestmark = pytest.mark.slow  # a Ray cluster: the integration tier

ray = ray_or_skip()

WORKERS = 2  # one-CPU worker nodes; a test that removes one first adds a spare
ON_NODES = RayEmbed(actors=2, cpus_per_actor=1, decode_cpus=1)  # one actor per node (fused)
ON_RAY = {**SWEEP, "runner": "ray"}
SETTINGS = EmbedSettings(batch_size=8, chunk_rows=16, num_workers=0, progress=False)
VIEWS = 2
CLIP = load_params("test")["clip"]


@pytest.fixture(scope="module")
def cluster():
    yield from ray_cluster(WORKERS, runtime_env={"env_vars": {"MLFLOW_TRACKING_URI": NO_TRACKING}})


@pytest.fixture(autouse=True)
def whole_pool(monkeypatch):
    """Ray Data dispatches once every actor is up: else the first actor on a busy machine can
    take every batch before the second one has imported torch. The wait ends as soon as the
    pool is up; 120 s timed out twice with a `make run` beside the suite on 2 cores."""
    monkeypatch.setattr(ray.data.DataContext.get_current(), "wait_for_min_actors_s", 600)


@pytest.fixture
def spare(cluster):
    """One more worker node, for a test that removes one (the pool must still fit after)."""
    cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE, include_dashboard=False)
    cluster.wait_for_nodes()
    return cluster


@pytest.fixture(scope="module")
def model():
    """The `test` environment's CLIP architecture, random weights (equality needs no training)."""
    return load_clip(CLIP["model_name"], None, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[ImageRef]:
    """48 small random RGB images: 96 rows, 12 batches, 6 chunks."""
    folder = tmp_path_factory.mktemp("images")
    generator = np.random.default_rng(0)
    for n in range(48):
        pixels = generator.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{n:02d}.png")
    return [ImageRef(sha256_file(path), path) for path in sorted(folder.glob("*.png"))]


@pytest.fixture(scope="module")
def local_chunks(model, images, tmp_path_factory) -> dict[str, str]:
    """The local runner's cache chunks (one torch thread, as each actor)."""
    cache = tmp_path_factory.mktemp("local_cache")
    _embed(model, images, cache)
    return chunk_digests(cache)


def _embed(model, images, cache: Path, runner=None) -> torch.Tensor:
    with torch_threads(CLIP["num_threads"]):
        recipe = model.view_recipe("augment")
        return embed_views(model, images, recipe, VIEWS, cache, SETTINGS, runner)[1]


def _remove(cluster, node_id: str) -> None:
    cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node_id))


def test_embed_spreads_over_nodes_to_the_local_chunks(
    cluster, model, images, local_chunks, tmp_path, caplog
):
    caplog.set_level("INFO", logger="croft_pipeline.distributed")
    _embed(model, images, tmp_path, ON_NODES)
    assert chunk_digests(tmp_path) == local_chunks and len(local_chunks) == 6
    (nodes_used,) = placements(caplog)
    assert len(nodes_used) == 2 and set(nodes_used) <= alive_nodes(ray)
    assert sum(nodes_used.values()) == 12  # every batch, each from the node its actor was on


def test_the_sweep_spreads_over_nodes_to_the_sequential_fits(cluster, tables, sequential, caplog):
    caplog.set_level("INFO", logger="croft_pipeline.distributed")
    result = nodes.fit_methods(*tables, CLASSES, ON_RAY, SEEDS)
    assert_same_fits(result, sequential)
    (nodes_used,) = placements(caplog)
    assert len(nodes_used) > 1 and set(nodes_used) <= alive_nodes(ray)
    assert sum(nodes_used.values()) == 2 * len(SEEDS)


def test_a_node_lost_mid_sweep_is_retried_on_the_others(
    spare, tables, sequential, tmp_path, monkeypatch, caplog
):
    """The first fit task writes its node id and waits; that node is removed under it."""
    caplog.set_level("INFO", logger="croft_pipeline.distributed")
    with _removing_the_stalled_node(spare, tmp_path, monkeypatch) as lost:
        result = nodes.fit_methods(*tables, CLASSES, ON_RAY, SEEDS)
    assert lost() not in alive_nodes(ray)
    assert_same_fits(result, sequential)
    (nodes_used,) = placements(caplog)
    assert lost() not in nodes_used and sum(nodes_used.values()) == 2 * len(SEEDS)


def test_a_node_lost_without_retries_left_is_named(spare, tables, tmp_path, monkeypatch):
    no_retry = {**ON_RAY, "ray": {"max_retries": 0}}
    with (
        pytest.raises(TaskLostError) as raised,
        _removing_the_stalled_node(spare, tmp_path, monkeypatch) as lost,
    ):
        nodes.fit_methods(*tables, CLASSES, no_retry, SEEDS)
    message = str(raised.value)
    assert message.startswith("train.runner: job ") and "train.ray.max_retries=0" in message
    assert lost() in message  # the node Ray says it lost


@contextmanager
def _removing_the_stalled_node(cluster, folder: Path, monkeypatch) -> Iterator:
    """``run_fit`` stalls once (``dying.stalls_once``) and a thread removes the node it stalls
    on as soon as that node's id is written; yields a function reading that id."""
    monkeypatch.setattr(tuning, "run_fit", partial(stalls_once, str(folder)))
    marker = folder / "node"
    remover = threading.Thread(target=_remove_when_written, args=(cluster, marker))
    remover.start()
    try:
        yield marker.read_text
    finally:
        remover.join()


def _remove_when_written(cluster, marker: Path, timeout: float = 60) -> None:
    """Remove the node whose id ``marker`` holds once it is written (at most ``timeout`` s)."""
    event = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if marker.exists():
            _remove(cluster, marker.read_text())
            return
        event.wait(0.05)


def test_a_node_lost_mid_embed_is_recomputed_on_the_others(
    spare, model, images, local_chunks, tmp_path, monkeypatch, caplog
):
    """The node of the first batch to arrive is removed before the driver takes the next one."""
    caplog.set_level("INFO", logger="croft_pipeline.distributed")
    lost = []
    write_chunks = ray_embed._write_chunks

    def remove_first_node(results, *args):
        def taken():
            for result in results:
                if not lost:
                    lost.append(str(result["node"]))
                    _remove(spare, lost[0])
                yield result

        return write_chunks(taken(), *args)

    monkeypatch.setattr(ray_embed, "_write_chunks", remove_first_node)
    cache = tmp_path / "cache"
    _embed(model, images, cache, ON_NODES)
    assert lost and lost[0] not in alive_nodes(ray)
    assert chunk_digests(cache) == local_chunks
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == sorted(
        [Path(name).name for name in local_chunks] + ["info.json"]
    )  # nothing half-written
    (nodes_used,) = placements(caplog)
    assert sum(nodes_used.values()) == 12


def test_an_image_a_node_cannot_read_is_named_with_the_node(cluster, model, images, tmp_path):
    missing = ImageRef("0" * 64, tmp_path / "not-mounted" / "cat.png")
    with pytest.raises(
        NotOnNodeError,
        match=r"not-mounted/cat\.png is not readable on Ray node [0-9a-f]+ .*docs/cluster.md",
    ):
        _embed(model, [*images, missing], tmp_path / "cache", ON_NODES)
