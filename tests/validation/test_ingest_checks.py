"""GX suites on the manifest and splits: each rule fails with its name and the offending rows."""

from __future__ import annotations

import json

import pytest

from croft_pipeline.data.manifest import build_manifest
from croft_pipeline.data.splits import make_splits
from croft_pipeline.validation import validate_ingest
from tests.data.image_factory import build_domain_tree, write_image

DOMAINS = ["art", "cartoon", "photo"]
DATASET = {"id_classes": ["dog", "horse"], "domains": DOMAINS, "heldout_domain": "photo"}
PARAMS = {
    "source": "folder",
    "sources": [{"root": "main", "layout": "domains", "role": "auto"}],
    "splits": {"shots": 2},
    "validation": {"min_side": 16, "max_side": 64},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("gx")
    build_domain_tree(root, DOMAINS, ["dog", "horse"], per_class=4)
    manifest, _, id_classes = build_manifest(PARAMS["sources"], {"main": root}, DATASET)
    splits = make_splits(manifest, [1], heldout_domain="photo", shots=2)
    return root, manifest, splits, id_classes


def validate(data, manifest=None, splits=None, dataset=None, params=None):
    root, base_manifest, base_splits, id_classes = data
    return validate_ingest(
        base_manifest if manifest is None else manifest,
        base_splits if splits is None else splits,
        id_classes,
        dataset or DATASET,
        params or PARAMS,
        {"main": root},
    )


def test_clean_data_passes_and_the_report_is_json(data):
    report = validate(data)
    assert report["success"], report["failure_message"]
    assert set(report["suites"]) == {"manifest", "splits", "id_groups_per_class"}
    json.dumps(report)


def test_the_same_data_gives_the_same_report(data):
    """GX stamps every run with new ids and times; the report keeps none of them, so its hash in
    dvc.lock changes only when the data or the checks do."""
    first, second = validate(data), validate(data)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    text = json.dumps(first)
    assert "validation_time" not in text and "run_time" not in text


def failed(report) -> str:
    assert not report["success"]
    return report["failure_message"]


def test_unknown_domain(data):
    manifest = data[1].copy()
    manifest.loc[0, "domain"] = "comic"
    message = failed(validate(data, manifest=manifest))
    assert "expect_column_values_to_be_in_set(column='domain'" in message
    assert f"path={manifest.loc[0, 'path']}" in message


def test_unknown_id_class_and_label_out_of_range(data):
    manifest = data[1].copy()
    manifest.loc[0, "class_name"] = "cat"
    manifest.loc[1, "label"] = 7
    message = failed(validate(data, manifest=manifest))
    assert "column='class_name'" in message and 'where role=="id"' in message
    assert "column='label', min_value=-1, max_value=1" in message


def test_missing_and_undecodable_files(data, tmp_path):
    manifest = data[1].copy()
    manifest.loc[0, "path"] = "art/dog/gone.png"
    manifest.loc[1, "path"] = "../../etc/passwd"
    message = failed(validate(data, manifest=manifest))
    assert "column='file_check'" in message
    assert "file does not exist" in message and "outside its dataset root" in message


def test_image_size_out_of_range(data):
    manifest = data[1].copy()
    manifest.loc[2, "width"] = 4
    message = failed(validate(data, manifest=manifest))
    assert "column='width', min_value=16, max_value=64" in message


def test_a_tiny_image_is_skipped_at_the_manifest_and_the_gate_passes(tmp_path):
    """A 1x1 file among good ones: the manifest skips it with its size, so the gate (the same
    ingest.validation bounds) passes instead of stopping the run."""
    build_domain_tree(tmp_path, DOMAINS, ["dog", "horse"], per_class=4)
    write_image(tmp_path / "art" / "dog" / "dot.png", seed=5, size=(1, 1))
    manifest, skipped, id_classes = build_manifest(
        PARAMS["sources"], {"main": tmp_path}, DATASET, None, PARAMS["validation"]
    )
    assert skipped["path"].tolist() == ["art/dog/dot.png"]
    assert skipped["reason"].iloc[0].startswith("image is 1x1 px; its sides must be 16 to 64 px")
    splits = make_splits(manifest, [1], heldout_domain="photo", shots=2)
    report = validate_ingest(manifest, splits, id_classes, DATASET, PARAMS, {"main": tmp_path})
    assert report["success"], report["failure_message"]


def test_the_gate_checks_the_default_sides_when_validation_is_unset(data):
    manifest = data[1].copy()
    manifest.loc[2, "width"] = 4  # under the default min_side of 16 (the gate once used 1)
    params = {key: value for key, value in PARAMS.items() if key != "validation"}
    message = failed(validate(data, manifest=manifest, params=params))
    assert "column='width', min_value=16, max_value=8192" in message


def test_same_image_in_two_splits(data):
    splits = data[2].copy()
    leak = splits[splits["split"] == "train"].head(1).assign(split="test_id")
    import pandas as pd

    message = failed(validate(data, splits=pd.concat([splits, leak], ignore_index=True)))
    assert "column='splits_sharing_sha256'" in message
    assert "column='splits_sharing_group'" in message
    assert leak["path"].iloc[0] in message


def test_too_few_training_concepts_in_a_class(data):
    # 8 source images per class (each its own concept): 2 go to val, 2 to test_id, 4 to train
    params = {**PARAMS, "splits": {"shots": 5, "val_fraction": 0.2, "test_fraction": 0.2}}
    message = failed(validate(data, params=params))
    assert "[id_groups_per_class]" in message
    assert "column='train_groups', min_value=5" in message
    assert "train_groups=4, class_name=dog" in message


def test_an_id_class_without_images_fails_naming_the_domains_it_misses(data):
    root, manifest, splits, id_classes = data
    dataset = {**DATASET, "id_classes": [*id_classes, "cat"]}
    no_horse_in_photo = manifest[
        (manifest["class_name"] != "horse") | (manifest["domain"] != "photo")
    ]
    report = validate_ingest(
        no_horse_in_photo, splits, [*id_classes, "cat"], dataset, PARAMS, {"main": root}
    )
    message = failed(report)
    assert "train_groups=0, class_name=cat, missing_from=art, cartoon, photo" in message
    coverage = report["suites"]["id_groups_per_class"]["results"][0]["result"]
    assert coverage["unexpected_count"] == 1  # horse, missing from photo only, still trains


def test_a_concept_in_two_of_train_val_test_id_fails_but_covariate_may_share(data):
    import pandas as pd

    splits = data[2].copy()
    train_group = splits.loc[splits["split"] == "train", "group"].iloc[0]
    sharing = splits[splits["split"] == "test_covariate"].head(1).assign(group=train_group)
    covariate_ok = pd.concat([splits[splits.index != sharing.index[0]], sharing])
    assert validate(data, splits=covariate_ok)["success"]
    leaked = splits[splits["split"] == "val"].head(1).assign(group=train_group)
    message = failed(
        validate(data, splits=pd.concat([splits[splits.index != leaked.index[0]], leaked]))
    )
    assert "column='splits_sharing_group'" in message
