"""Discovery: layouts, and every odd entry under a root is either used or listed with a reason."""

from __future__ import annotations

import os

import pytest

from croft_pipeline.data.discovery import discover, image_file, resolve_in_root
from tests.data.image_factory import write_image


def reasons(skipped) -> dict[str, str]:
    return {s.path: s.reason for s in skipped}


def test_domain_layout_with_unicode_and_spaces_in_names(tmp_path):
    write_image(tmp_path / "photo" / "dog" / "chien été 1.png", 1)
    write_image(tmp_path / "art painting" / "éléphant" / "象 2.png", 2)
    found, skipped = discover("main", tmp_path, "domains")
    assert not skipped
    assert {(f.domain, f.folder, f.path) for f in found} == {
        ("photo", "dog", "photo/dog/chien été 1.png"),
        ("art painting", "éléphant", "art painting/éléphant/象 2.png"),
    }


def test_class_layout_uses_the_configured_domain(tmp_path):
    write_image(tmp_path / "banded" / "a.png", 1)
    found, _ = discover("openset", tmp_path, "classes", domain="dtd")
    assert [(f.domain, f.folder) for f in found] == [("dtd", "banded")]


def test_symlink_outside_the_root_is_skipped_inside_is_kept(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_image(outside / "secret.png", 1)
    write_image(root / "photo" / "dog" / "real.png", 2)
    os.symlink(outside / "secret.png", root / "photo" / "dog" / "escape.png")
    os.symlink(root / "photo" / "dog" / "real.png", root / "photo" / "dog" / "alias.png")
    os.symlink(outside, root / "photo" / "cat")
    found, skipped = discover("main", root, "domains")
    assert {f.path for f in found} == {"photo/dog/real.png", "photo/dog/alias.png"}
    assert reasons(skipped) == {
        "photo/dog/escape.png": "symlink points outside the dataset root",
        "photo/cat/": "symlinked folder (not followed)",
    }


def test_empty_class_folder_hidden_files_and_wrong_depth_are_listed(tmp_path):
    (tmp_path / "photo" / "giraffe").mkdir(parents=True)
    write_image(tmp_path / "photo" / "dog" / "a.png", 1)
    write_image(tmp_path / "photo" / "dog" / ".DS_Store", 2)
    write_image(tmp_path / "photo" / "stray.png", 3)
    write_image(tmp_path / "photo" / "dog" / "nested" / "deep.png", 4)
    (tmp_path / "README.md").write_text("metadata beside the data")
    found, skipped = discover("main", tmp_path, "domains", metadata_files=("*.md",))
    assert [f.path for f in found] == ["photo/dog/a.png"]
    got = reasons(skipped)
    assert got["photo/giraffe/"] == "empty class folder"
    assert got["photo/dog/.DS_Store"] == "hidden file"
    assert "layout" in got["photo/stray.png"]
    assert "layout" in got["photo/dog/nested/deep.png"]
    assert "README.md" not in got


@pytest.mark.skipif(os.name != "posix", reason="byte file names are POSIX-only")
def test_file_name_that_is_not_utf8_is_listed(tmp_path):
    folder = tmp_path / "photo" / "dog"
    folder.mkdir(parents=True)
    with open(os.path.join(os.fsencode(folder), b"bad\xffname.png"), "wb") as handle:
        handle.write(b"x")
    found, skipped = discover("main", tmp_path, "domains")
    assert not found
    assert [s.reason for s in skipped] == ["file name is not valid UTF-8"]


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset root 'main'"):
        discover("main", tmp_path / "nope", "domains")


def test_resolve_in_root_refuses_escapes(tmp_path):
    assert resolve_in_root(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()
    with pytest.raises(ValueError, match="outside its dataset root"):
        resolve_in_root(tmp_path, "../etc/passwd")


def test_image_file_resolves_through_dataset_roots(tmp_path):
    roots = {"main": "data/01_raw/x", "abs": str(tmp_path / "elsewhere")}
    assert (
        image_file(roots, tmp_path, "main", "a/b.png")
        == (tmp_path / "data/01_raw/x/a/b.png").resolve()
    )
    assert image_file(roots, "/ignored", "abs", "c.png") == (tmp_path / "elsewhere/c.png").resolve()
    with pytest.raises(KeyError, match="not in dataset_roots"):
        image_file(roots, tmp_path, "other", "c.png")
    with pytest.raises(ValueError, match="outside"):
        image_file(roots, tmp_path, "main", "../../../../etc/passwd")
