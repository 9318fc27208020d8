"""EmojiShift: class maps, fonts, deterministic and idempotent rendering, captions, attribution."""

from __future__ import annotations

import copy

import pytest
from PIL import Image

from croft_pipeline.data.emoji_catalog import build_class_map, load_catalog, split_pretrain
from croft_pipeline.data.emojishift import (
    FILE_PATTERN,
    STAMP_FILE,
    build_pretrain_pairs,
    class_kinds,
    class_roles,
    codepoint_of,
    downstream_emoji,
    draw_roles,
    plan_jobs,
    render_emojishift,
)
from croft_pipeline.data.fonts import SHIPPED_FONTS, font_codepoints, font_path
from croft_pipeline.data.manifest import build_manifest

CONFIG = {
    "image_size": 24,
    "pretrain_fraction": 0.5,
    "styles": {
        "openmoji": {"font": "openmoji", "embedded_color": True},
        "noto": {"font": "noto", "weights": [400, 700]},
        "symbola": {"font": "symbola"},
    },
    "variants": [{"scale": 1.0, "shift": [0, 0]}, {"scale": 0.8, "shift": [0.05, -0.05]}],
    "id_classes": [
        {"name": "bird", "subgroups": ["animal-bird"]},
        {"name": "sea animal", "subgroups": ["animal-marine"], "exclude": ["U+1F41A"]},
    ],
    "openset_classes": [{"name": "dessert", "subgroups": ["food-sweet"]}],
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    base = tmp_path_factory.mktemp("emojishift")
    receipt = render_emojishift(CONFIG, base / "main", base / "pretrain")
    return base, receipt


def test_all_shipped_fonts_are_found_offline():
    for name in SHIPPED_FONTS:
        assert font_path(name).is_file()
        assert 0x1F426 in font_codepoints(str(font_path(name)))  # bird


def test_class_map_from_subgroups_codepoints_and_excludes():
    class_map = build_class_map(
        {"sea": {"subgroups": ["animal-marine"], "exclude": ["U+1F41A"], "codepoints": ["U+1F986"]}}
    )
    codepoints = {e.codepoint for e in class_map["sea"]}
    assert 0x1F41A not in codepoints and 0x1F986 in codepoints and 0x1F40B in codepoints


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"a": {"subgroups": ["no-such-subgroup"]}}, "unknown CLDR subgroup"),
        ({"a": {"subgroups": ["animal-bird"]}, "b": {"codepoints": ["U+1F426"]}}, "in two classes"),
        ({"a": {"codepoints": ["U+0041"]}}, "not in the emoji catalog"),
    ],
)
def test_class_map_errors(classes, message):
    with pytest.raises(ValueError, match=message):
        build_class_map(classes)


def test_pretrain_split_is_disjoint_deterministic_and_stable():
    members = build_class_map({"m": {"subgroups": ["animal-mammal"]}})["m"]
    pretrain, downstream = split_pretrain(members, 0.5, seed=0)
    assert not {e.codepoint for e in pretrain} & {e.codepoint for e in downstream}
    assert len(pretrain) + len(downstream) == len(members)
    assert split_pretrain(members, 0.5, seed=0) == (pretrain, downstream)
    # dropping one emoji moves no other emoji across the split
    dropped = members[0]
    pre2, down2 = split_pretrain(members[1:], 0.5, seed=0)
    assert set(down2) <= set(downstream) | {e for e in pretrain if e != dropped}
    assert len(set(pre2) ^ (set(pretrain) - {dropped})) <= 1


def test_near_and_far_open_set_classes():
    config = copy.deepcopy(CONFIG)
    config["openset_classes"].append({"name": "sport", "subgroups": ["sport"]})
    assert class_kinds(class_roles(config), downstream_emoji(config)) == {
        "dessert": "far",
        "sport": "far",
    }
    config["openset_val_classes"] = [{"name": "plant", "subgroups": ["plant-other"]}]
    kinds = class_kinds(class_roles(config), downstream_emoji(config))
    assert kinds["plant"] == "near"  # animals-nature, like bird


def test_rendered_layout_sizes_and_styles(rendered):
    base, receipt = rendered
    assert set(receipt["images_per_domain"]) == {"openmoji", "noto", "symbola"}
    images = sorted((base / "main").glob("*/*/*.png"))
    assert len(images) == receipt["images"]["downstream"] > 0
    with Image.open(images[0]) as image:
        assert image.size == (24, 24) and image.mode == "RGB"
    colourful = Image.open(next((base / "main" / "openmoji" / "bird").glob("*.png"))).convert("HSV")
    assert max(colourful.getchannel("S").getdata()) > 100  # colour font drew in colour
    mono = Image.open(next((base / "main" / "noto" / "bird").glob("*.png"))).convert("HSV")
    assert max(mono.getchannel("S").getdata()) < 30


def test_pretraining_and_downstream_emoji_are_disjoint(rendered):
    base, _ = rendered

    def codepoints(root):
        return {codepoint_of(p.name) for p in root.glob("*/*/*.png")}

    downstream, pretrain = codepoints(base / "main"), codepoints(base / "pretrain")
    assert downstream and pretrain and None not in downstream | pretrain
    assert not downstream & pretrain


def test_rendering_is_deterministic(rendered, tmp_path):
    base, receipt = rendered
    again = render_emojishift(CONFIG, tmp_path / "main", tmp_path / "pretrain")
    assert again["stamp"] == receipt["stamp"] and not again["reused"]
    for root in ("main", "pretrain"):
        first = sorted(p.relative_to(base / root) for p in (base / root).glob("*/*/*.png"))
        second = sorted(p.relative_to(tmp_path / root) for p in (tmp_path / root).glob("*/*/*.png"))
        assert first and first == second
        for rel in first:
            assert (tmp_path / root / rel).read_bytes() == (base / root / rel).read_bytes()


def test_rerun_reuses_and_a_new_config_removes_stale_images(tmp_path):
    config = copy.deepcopy(CONFIG)
    config["styles"] = {"noto": CONFIG["styles"]["noto"]}
    main, pretrain = tmp_path / "main", tmp_path / "pretrain"
    render_emojishift(config, main, pretrain)
    stamp = (main / STAMP_FILE).stat().st_mtime_ns
    assert render_emojishift(config, main, pretrain)["reused"]
    assert (main / STAMP_FILE).stat().st_mtime_ns == stamp
    config["openset_classes"] = []
    receipt = render_emojishift(config, main, pretrain)
    assert not receipt["reused"]
    assert not list(main.glob("noto/dessert/*.png"))
    assert len(list(main.glob("*/*/*.png"))) == receipt["images"]["downstream"]


def test_attribution_and_licences_beside_the_images(rendered):
    base, _ = rendered
    for root in (base / "main", base / "pretrain"):
        text = (root / "ATTRIBUTION.md").read_text("utf-8")
        assert "CC BY-SA 4.0" in text and "Open Font License" in text and "Douros" in text
        assert (root / "LICENSE-openmoji.txt").read_text("utf-8").count("ShareAlike") >= 1


def test_captions_from_emoji_names_for_pretraining_images_only(rendered):
    base, _ = rendered
    sources = [
        {"root": "main", "layout": "domains", "role": "auto"},
        {"root": "pretrain", "layout": "domains", "role": "pretrain"},
    ]
    dataset = {
        "id_classes": ["bird", "sea animal"],
        "openset_classes": ["dessert"],
        "group_pattern": FILE_PATTERN.pattern,
    }
    manifest, skipped, _ = build_manifest(
        sources,
        {"main": base / "main", "pretrain": base / "pretrain"},
        dataset,
        {"metadata_files": ["*.md", "*.txt", ".*"]},
    )
    assert skipped.empty
    pairs = build_pretrain_pairs(manifest, ["{name}", "an emoji of a {class_name}"])
    pretrain = manifest[manifest["role"] == "pretrain"]
    assert set(pairs["sha256"]) == set(pretrain["sha256"])
    assert len(pairs) == 2 * len(pretrain)
    names = {e.name for e in load_catalog().values()}
    assert set(pairs["caption"]) & names
    assert "an emoji of a sea animal" in set(pairs["caption"])


def _jobs(config, root_key):
    return sorted(
        (j.relpath, j.emoji.codepoint) for j in plan_jobs(config)[0] if j.root_key == root_key
    )


def test_openset_val_classes_go_downstream_whole_and_change_nothing_else():
    """Adding OOD validation classes keeps the pretraining images (so the CLIP checkpoint) and
    every other class's downstream images as they were; all their emoji go downstream."""
    config = copy.deepcopy(CONFIG)
    config["openset_val_classes"] = [{"name": "boat", "subgroups": ["transport-water"]}]
    assert _jobs(config, "pretrain") == _jobs(CONFIG, "pretrain")
    before, after = set(_jobs(CONFIG, "downstream")), set(_jobs(config, "downstream"))
    added = after - before
    assert before < after and {rel.split("/")[1] for rel, _ in added} == {"boat"}
    boat = {e.codepoint for e in build_class_map({"b": {"subgroups": ["transport-water"]}})["b"]}
    assert {codepoint for _, codepoint in added} <= boat
    assert len({codepoint for _, codepoint in added}) > len(boat) / 2  # not halved
    assert class_roles(config)["boat"] == "openset_val"


@pytest.mark.parametrize("key", ["openset_classes", "openset_val_classes"])
def test_a_class_in_two_emojishift_lists_is_an_error_naming_both(key):
    config = copy.deepcopy(CONFIG)
    config["openset_val_classes"] = [{"name": "bird", "subgroups": ["transport-water"]}]
    if key == "openset_classes":
        config["openset_val_classes"] = [{"name": "dessert", "subgroups": ["transport-water"]}]
    with pytest.raises(ValueError, match=r"openset_val_classes: class '\w+' is also in"):
        class_roles(config)


def test_draw_roles_is_seeded_with_the_shares_and_disjoint():
    names = [f"c{i:02d}" for i in range(40)]
    roles = draw_roles(names, 0.4, 0.15, seed=1)
    assert roles == draw_roles(names, 0.4, 0.15, seed=1)
    assert roles != draw_roles(names, 0.4, 0.15, seed=2)
    counts = {r: sum(v == r for v in roles.values()) for r in ("id", "openset_val", "openset")}
    assert counts == {"id": 16, "openset_val": 6, "openset": 18}
    assert set(roles) == set(names)  # each class has exactly one role
    ident = [n for n, r in roles.items() if r == "id"]
    assert list(roles)[: len(ident)] == sorted(ident)  # ID first, in label order


def test_class_split_draws_subgroup_classes_without_the_pretraining_emoji():
    config = copy.deepcopy(CONFIG)
    config["class_split"] = {
        "pool": ["animal-bird", "animal-marine", "food-sweet", "animal-mammal", "tool"],
        "min_emoji": 3,
        "id_share": 0.4,
        "openset_val_share": 0.2,
        "seed": 1,
    }
    roles = class_roles(config)
    assert set(roles) == {"animal bird", "animal marine", "food sweet", "animal mammal", "tool"}
    assert sorted(roles.values()) == ["id", "id", "openset", "openset", "openset_val"]
    assert _jobs(config, "pretrain") == _jobs(CONFIG, "pretrain")  # the same CLIP pairs
    kept = {c for _, c in _jobs(CONFIG, "pretrain")}
    downstream = {c for _, c in _jobs(config, "downstream")}
    assert downstream and not downstream & kept
    birds = {e.codepoint for e in build_class_map({"b": {"subgroups": ["animal-bird"]}})["b"]}
    assert birds & kept and birds & downstream  # class bird's kept half stays aside
    config["class_split"]["min_emoji"] = 1000
    with pytest.raises(ValueError, match="at least 2 classes"):
        class_roles(config)
