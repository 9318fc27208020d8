"""The Ray Data runner of ``embed`` writes the local runner's cache: the same chunk files, byte
for byte, for the `test` environment's images (CPU, one torch thread in each process), and a
cache half written by one runner is completed by the other to the same features."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from croft_pipeline.clip.backend import load_clip
from croft_pipeline.clip.embedding import EmbedSettings, ImageRef, embed_views
from croft_pipeline.common.compute import torch_threads
from croft_pipeline.common.features import FeatureTable
from croft_pipeline.common.files import sha256_file
from croft_pipeline.distributed.embed import RayEmbed
from tests.distributed.conftest import local_ray, ray_or_skip
from tests.kedro_harness import (
    EMBED_CACHE,
    chunk_digests,
    clear_outputs,
    copy_project,
    load_params,
    run_pipeline,
)

ray = ray_or_skip()

TABLES = ("image_features_center", "image_features_train_views")
ON_RAY = {"runner": "ray", "ray": {"actors": 2, "cpus_per_actor": 0.5, "decode_cpus": 0.5}}


@pytest.fixture(scope="module")
def cluster():
    yield from local_ray()


@pytest.fixture(scope="module")
def local_run(tiny_project) -> Path:
    """The `test` environment's ingest, pretrain and (local runner) embed pipelines: the shared
    tiny run's (read only: the tests run Ray in copies or caches of their own)."""
    return tiny_project


def _table(project: Path, name: str) -> FeatureTable:
    return FeatureTable.load(project / f"data/04_feature/{name}.safetensors")


def test_ray_runner_writes_the_local_runners_chunks(cluster, local_run, tiny_run, tmp_path):
    project = copy_project(local_run, tmp_path / "project")
    clear_outputs(project, "embed")
    run_pipeline(project, "embed", env="test", extra_params={"embed": ON_RAY})
    expected = tiny_run.cache_chunks  # the local runner's chunks
    assert len(expected) > 4  # several chunks in each of the two cache folders
    assert chunk_digests(project / EMBED_CACHE) == expected  # same names (chunk plan) and bytes
    for name in TABLES:
        local, on_ray = _table(local_run, name), _table(project, name)
        assert on_ray.keys == local.keys and torch.equal(on_ray.features, local.features)


def test_a_half_written_cache_resumes_with_either_runner(cluster, local_run, tmp_path):
    """Half the chunks by the local runner, the rest by Ray; then the reverse."""
    params = load_params("test")
    clip, embed = params["clip"], params["embed"]
    loaded = load_clip(clip["model_name"], clip["pretrained"], device="cpu", base_dir=local_run)
    paths = sorted((local_run / "data/01_raw/emojishift").rglob("*.png"))[:48]
    images = [ImageRef(sha256_file(path), path) for path in paths]
    recipe = loaded.view_recipe("augment")
    settings = EmbedSettings(embed["batch_size"], embed["chunk_rows"], 0, progress=False)
    ray_runner = RayEmbed(**ON_RAY["ray"])
    cache = tmp_path / "cache"
    with torch_threads(clip["num_threads"]):  # as the pipeline: one thread, as each actor
        _, expected = embed_views(loaded, images, recipe, 2, cache, settings)
        written = {path: path.read_bytes() for path in cache.rglob("chunk-*.safetensors")}
        assert len(written) == 6  # 96 rows in chunks of 16
        by_local = sorted(written)[::2]
        kept = {path: path.stat().st_mtime_ns for path in by_local}
        for path in set(written) - set(by_local):
            path.unlink()
        _, resumed = embed_views(loaded, images, recipe, 2, cache, settings, ray_runner)
        assert torch.equal(resumed, expected)
        assert {path: path.stat().st_mtime_ns for path in by_local} == kept  # not recomputed
        for path in by_local:  # now only Ray's chunks are left: the local runner resumes
            path.unlink()
        _, again = embed_views(loaded, images, recipe, 2, cache, settings)
        assert torch.equal(again, expected)
    assert {path: path.read_bytes() for path in cache.rglob("chunk-*.safetensors")} == written
