"""The feature cache: atomic chunks, content keys (model, preprocessing, image, view), resumption."""

from __future__ import annotations

import pytest
import torch

from croft_pipeline.clip.backend import load_clip
from croft_pipeline.clip.cache import FeatureCache, cache_folder
from croft_pipeline.clip.embedding import EmbedSettings, embed_views
from croft_pipeline.clip.views import AUGMENT, CENTER
from tests.clip.conftest import TINY, write_checkpoint

SMALL = EmbedSettings(batch_size=4, chunk_rows=8, num_workers=0, progress=False)


def _chunks(root):
    return {path: path.stat().st_mtime_ns for path in root.rglob("chunk-*.safetensors")}


def test_chunk_round_trip_and_half_written_files_are_ignored(tmp_path):
    """Chunks are renamed into place whole, so only a ``.tmp`` file can be half written."""
    cache = FeatureCache(tmp_path)
    cache.write_chunk(["a:0", "b:0"], torch.arange(6.0).view(2, 3))
    (tmp_path / ".chunk-x.safetensors.123.tmp").write_bytes(b"partial")
    index = cache.index()
    assert set(index) == {"a:0", "b:0"}
    torch.testing.assert_close(
        cache.read(["b:0", "a:0"], index), torch.tensor([[3.0, 4, 5], [0, 1, 2]])
    )
    with pytest.raises(KeyError, match="1 rows not in cache"):
        cache.read(["c:0"])


def test_features_match_direct_encoding_and_a_rerun_computes_nothing(
    tiny_clip, image_refs, tmp_path
):
    recipe = tiny_clip.view_recipe(CENTER)
    keys, features = embed_views(tiny_clip, image_refs, recipe, 1, tmp_path, SMALL)
    assert keys == sorted(ref.sha256 for ref in image_refs)
    assert features.shape == (40, 1, 32)
    by_sha = {ref.sha256: ref for ref in image_refs}
    from croft_pipeline.clip.backend import encode_images
    from croft_pipeline.data.images import load_rgb

    direct = encode_images(tiny_clip, [load_rgb(by_sha[key].path) for key in keys[:4]])
    torch.testing.assert_close(features[:4, 0], direct, rtol=1e-4, atol=1e-5)
    before = _chunks(tmp_path)
    assert len(before) == 5  # 40 rows in chunks of 8
    keys_again, again = embed_views(tiny_clip, image_refs, recipe, 1, tmp_path, SMALL)
    assert _chunks(tmp_path) == before  # nothing recomputed or rewritten
    assert keys_again == keys and torch.equal(again, features)


def test_changed_preprocessing_or_checkpoint_misses_the_cache(tiny_clip, image_refs, tmp_path):
    refs = image_refs[:8]
    embed_views(tiny_clip, refs, tiny_clip.view_recipe(AUGMENT), 2, tmp_path, SMALL)
    first = set(_chunks(tmp_path))
    embed_views(
        tiny_clip, refs, tiny_clip.view_recipe(AUGMENT, scale=(0.5, 1.0)), 2, tmp_path, SMALL
    )
    second = set(_chunks(tmp_path))
    assert len(second - first) == 2  # 16 new rows: another recipe folder
    other = load_clip(TINY, write_checkpoint(tmp_path / "other.safetensors", seed=5), device="cpu")
    embed_views(other, refs, other.view_recipe(AUGMENT), 2, tmp_path, SMALL)
    third = set(_chunks(tmp_path))
    assert len(third - second) == 2
    assert (
        cache_folder(tmp_path, other.model_key, "x").parent
        != cache_folder(tmp_path, tiny_clip.model_key, "x").parent
    )


def test_views_of_one_image_differ_and_new_images_reuse_cached_rows(
    tiny_clip, image_refs, tmp_path
):
    recipe = tiny_clip.view_recipe(AUGMENT)
    _, features = embed_views(tiny_clip, image_refs[:16], recipe, 3, tmp_path, SMALL)
    assert features.shape == (16, 3, 32)
    assert not torch.allclose(features[:, 0], features[:, 1])
    cached_rows = set(
        FeatureCache(cache_folder(tmp_path, tiny_clip.model_key, recipe.key())).index()
    )
    keys, more = embed_views(tiny_clip, image_refs[:24], recipe, 3, tmp_path, SMALL)
    rows_now = set(FeatureCache(cache_folder(tmp_path, tiny_clip.model_key, recipe.key())).index())
    assert cached_rows < rows_now and len(rows_now) == 24 * 3


def test_a_lost_chunk_is_recomputed_to_the_same_values(tiny_clip, image_refs, tmp_path):
    recipe = tiny_clip.view_recipe(AUGMENT)
    _, features = embed_views(tiny_clip, image_refs, recipe, 2, tmp_path, SMALL)
    chunks = sorted(_chunks(tmp_path))
    chunks[3].unlink()
    _, again = embed_views(tiny_clip, image_refs, recipe, 2, tmp_path, SMALL)
    assert len(_chunks(tmp_path)) == len(chunks)
    assert torch.equal(again, features)


def _flip_last_tensor_byte(path):
    """One bit of the chunk's last feature value: still a valid safetensors file."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_chunk_whose_bytes_changed_is_an_error_naming_it_not_rows_used(
    tiny_clip, image_refs, tmp_path
):
    """The filed case: flipped bytes inside a chunk's tensor data were read as cached rows."""
    recipe = tiny_clip.view_recipe(CENTER)
    embed_views(tiny_clip, image_refs[:8], recipe, 1, tmp_path, SMALL)
    (chunk,) = _chunks(tmp_path)
    _flip_last_tensor_byte(chunk)
    before = chunk.read_bytes()
    with pytest.raises(ValueError, match=rf"{chunk}: its bytes changed.*delete it: the next"):
        embed_views(tiny_clip, image_refs[:8], recipe, 1, tmp_path, SMALL)
    assert chunk.read_bytes() == before  # not silently recomputed either
    chunk.unlink()  # the fix the error gives
    _, features = embed_views(tiny_clip, image_refs[:8], recipe, 1, tmp_path, SMALL)
    assert torch.isfinite(features).all()


def test_non_finite_rows_are_refused_when_written_and_when_read(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match=r"1 of 2 rows hold NaN.*first: 'b:0'"):
        cache.write_chunk(["a:0", "b:0"], torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]))
    assert not _chunks(tmp_path)
    from croft_pipeline.clip import cache as cache_module

    monkeypatch.setattr(cache_module, "check_finite", lambda *args: None)  # an older writer
    cache.write_chunk(["a:0", "b:0"], torch.tensor([[1.0, 2.0], [float("inf"), 0.0]]))
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"cache chunk .*chunk-.*1 of 2 rows hold NaN or inf"):
        cache.read(["a:0"])


def test_a_chunk_written_before_sealing_is_recomputed_with_a_warning(tmp_path, caplog):
    from safetensors.torch import save_file

    save_file(
        {"features": torch.ones(1, 2)},
        str(tmp_path / "chunk-old.safetensors"),
        metadata={"keys": '["a:0"]', "meta": "{}"},
    )
    assert FeatureCache(tmp_path).index() == {}
    assert "written before chunks were sealed" in caplog.text


def test_a_chunk_whose_header_is_broken_is_an_error_naming_it(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.write_chunk(["a:0"], torch.ones(1, 3))
    broken = tmp_path / "chunk-broken.safetensors"
    broken.write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match=rf"{broken}: unreadable cache chunk.*delete it"):
        cache.index()
