"""The default CLIP's locked towers: the shipped trunk's key mapping, both towers frozen by
pretraining, trunk features cached by content, and one checkpoint whatever the bf16 support."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import open_clip
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

import croft_pipeline.pretraining.contrastive as pretrain_module
from croft_pipeline.clip.backend import load_clip
from croft_pipeline.clip.configs import project_settings, shipped_config
from croft_pipeline.clip.errors import ClipLoadError
from croft_pipeline.common.files import sha256_file
from croft_pipeline.pretraining.contrastive import PretrainConfig, create_trainable_model, recipe_of
from croft_pipeline.pretraining.default_model import ensure_checkpoint
from croft_pipeline.pretraining.trunk import mapped_trunk_state, trunk_settings, trunk_weights_path
from tests.clip.conftest import TINY

DEFAULT = "CroftLite0-MiniLM-112"
FAST = PretrainConfig(
    steps=3, batch_size=8, warmup_steps=1, log_every=1, views=2, lock_text_tower=True
)
# Photos shipped inside installed packages (matplotlib's and scikit-learn's sample images),
# with the ImageNet-1k class a sound ImageNet model gives them.
PHOTOS = {
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"): 652,  # military uniform
    ("sklearn", "datasets/images/china.jpg"): 698,  # palace
    ("sklearn", "datasets/images/flower.jpg"): 985,  # daisy
}


def _package_file(package: str, inner: str) -> Path:
    module = __import__(package)
    return Path(module.__file__).parent / inner


def _source_state() -> dict[str, torch.Tensor]:
    settings = trunk_settings(DEFAULT)
    return torch.load(trunk_weights_path(settings), map_location="cpu", weights_only=True)


def _pairs(image_refs, n=8):
    paths = [ref.path for ref in image_refs[:n]]
    shas = [ref.sha256 for ref in image_refs[:n]]
    return paths, shas, [f"an emoji of a class {i % 3}" for i in range(n)]


def test_the_default_model_uses_the_locked_recipe_and_the_tiny_one_does_not():
    assert recipe_of(DEFAULT) == "locked_towers" and recipe_of(TINY) == "from_scratch"
    assert project_settings(TINY) == {}


def test_the_shipped_weights_mapped_by_order_classify_photos_as_imagenet_does():
    """The key mapping, the architecture (TF 'same' padding) and the normalisation together:
    the trunk with the file's classifier names real photos' ImageNet classes."""
    settings = trunk_settings(DEFAULT)
    architecture = shipped_config(DEFAULT)["vision_cfg"]["timm_model_name"]
    classifier = timm.create_model(architecture, pretrained=False).eval()
    state = mapped_trunk_state(classifier, _source_state(), {**settings, "skip_prefixes": []})
    classifier.load_state_dict(state, strict=True)
    # the normalisation the model config declares, at ImageNet's 224 px
    preprocess_cfg = load_clip(DEFAULT, None, device="cpu").preprocess_cfg
    transform = open_clip.image_transform(
        224, is_train=False, mean=preprocess_cfg["mean"], std=preprocess_cfg["std"]
    )
    ranks = []
    for (package, inner), imagenet_class in PHOTOS.items():
        pixels = transform(Image.open(_package_file(package, inner)).convert("RGB"))[None]
        with torch.no_grad():
            order = classifier(pixels).argsort(dim=-1, descending=True)[0]
        ranks.append(int((order == imagenet_class).nonzero()))
    assert max(ranks) < 3, ranks  # each photo's class among the top 3 of 1000
    assert ranks.count(0) >= 2, ranks


def test_a_weights_file_that_does_not_fit_the_trunk_is_refused_naming_it():
    settings = trunk_settings(DEFAULT)
    model = create_trainable_model(DEFAULT, 0)
    source = _source_state()
    first = next(iter(source))
    bad_shape = {**source, first: source[first][:1]}
    with pytest.raises(ClipLoadError, match=r"efficientnet-lite0-57934424.pth.*shape"):
        mapped_trunk_state(model.visual.trunk, bad_shape, settings)
    missing_one = dict(list(source.items())[1:])
    with pytest.raises(ClipLoadError, match=r"tensors .* for a trunk of"):
        mapped_trunk_state(model.visual.trunk, missing_one, settings)
    with pytest.raises(ClipLoadError, match="sha256"):
        trunk_weights_path({**settings, "sha256": "0" * 64})


def test_pretraining_changes_only_the_projections_and_the_logit_scale(image_refs, tmp_path):
    paths, shas, captions = _pairs(image_refs)
    target = tmp_path / "clip.safetensors"
    report = ensure_checkpoint(DEFAULT, paths, shas, captions, target, FAST, progress=False)
    assert (report["recipe"], report["precision"], report["trained"]) == (
        "locked_towers",
        "fp32",
        True,
    )
    trained = load_file(str(target))
    initial = create_trainable_model(DEFAULT, FAST.seed).state_dict()
    mapped = mapped_trunk_state(
        create_trainable_model(DEFAULT, 1).visual.trunk, _source_state(), trunk_settings(DEFAULT)
    )
    for name, value in mapped.items():  # the trunk is the shipped file's, bit for bit
        assert torch.equal(trained[f"visual.trunk.{name}"], value), name
    changed = {k for k in initial if not torch.equal(initial[k], trained[k])}
    assert changed == {"visual.head.proj.weight", "text.proj.weight", "logit_scale"}


def test_trunk_features_are_cached_and_give_the_same_checkpoint(image_refs, tmp_path):
    paths, shas, captions = _pairs(image_refs)
    cache = tmp_path / "trunk"
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    cold = ensure_checkpoint(
        DEFAULT, paths, shas, captions, first, FAST, progress=False, feature_cache=cache
    )
    warm = ensure_checkpoint(
        DEFAULT, paths, shas, captions, second, FAST, progress=False, feature_cache=cache
    )
    assert not cold["trunk_features_cached"] and warm["trunk_features_cached"]
    assert len(list(cache.glob("*.safetensors"))) == 1
    assert sha256_file(first) == sha256_file(second)
    other_views = ensure_checkpoint(
        DEFAULT,
        paths,
        shas,
        captions,
        tmp_path / "c.safetensors",
        replace(FAST, views=3),
        progress=False,
        feature_cache=cache,
    )
    assert not other_views["trunk_features_cached"] and len(list(cache.glob("*"))) == 2


@pytest.mark.parametrize("model_name", [DEFAULT])
def test_the_checkpoint_is_the_same_whether_bf16_is_supported_or_not(
    model_name, image_refs, tmp_path, monkeypatch
):
    paths, shas, captions = _pairs(image_refs)
    config = replace(FAST, bf16=True)
    shas_by_flag, stamps = {}, set()
    for supported in (True, False):
        monkeypatch.setattr(pretrain_module, "bf16_supported", lambda device, s=supported: s)
        target = tmp_path / f"bf16-{supported}.safetensors"
        report = ensure_checkpoint(
            model_name, paths, shas, captions, target, config, progress=False
        )
        assert report["precision"] == "fp32"
        shas_by_flag[supported], stamps = sha256_file(target), stamps | {report["stamp"]}
    assert shas_by_flag[True] == shas_by_flag[False] and len(stamps) == 1


def test_the_from_scratch_recipe_stamps_the_precision_that_ran(image_refs, tmp_path, monkeypatch):
    paths, shas, captions = _pairs(image_refs)
    config = replace(FAST, bf16=True, lock_text_tower=False)
    reports = {}
    for supported in (True, False):
        monkeypatch.setattr(pretrain_module, "bf16_supported", lambda device, s=supported: s)
        target = tmp_path / f"tiny-{supported}.safetensors"
        reports[supported] = ensure_checkpoint(
            TINY, paths, shas, captions, target, replace(config, steps=1), progress=False
        )
    assert (reports[True]["precision"], reports[False]["precision"]) == ("bf16", "fp32")
    assert reports[True]["stamp"] != reports[False]["stamp"]
