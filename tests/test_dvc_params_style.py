"""``dvc exp run -S`` rewrites a parameters file through DVC's own YAML round trip (ruamel, block
style for every list it sets); the files are written in the style it writes back, so one changed
value is a one-line diff (docs/dvc.md)."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from omegaconf import OmegaConf
from omegaconf.errors import UnsupportedInterpolationType

BASE = Path(__file__).resolve().parents[1] / "conf" / "base"
# one change per file, as `-S '<file>:<override>'` gives it (the docs' experiments among them)
CHANGES = {
    "parameters.yml": ["seeds=[1,2,4]"],
    "parameters_train.yml": [
        "train.equal_budget=false",
        "train.grids.croft_clean.lambda2=[10.0]",
        "+train.method_params.croft_clean.ratio=0.3",
        "train.methods=[zero_shot,linear_probe,clip_adapter,tip_adapter_f,croft_faithful,croft_clean]",
        "train.wise.alphas=[0.0,1.0]",
    ],
    "parameters_calibrate.yml": ["calibrate.tpr=0.9", "calibrate.score=msp"],
    "parameters_embed.yml": [
        "embed.batch_size=64",
        "embed.augment.flip=false",
        "embed.negative_labels.parts=[noun]",
        "embed.negative_labels.max_candidates=400",
    ],
    "parameters_clip.yml": ["clip.num_threads=2"],
    "parameters_evaluate.yml": ["evaluate.tpr=0.9"],
    "parameters_ingest.yml": ["ingest.emojishift.image_size=64"],
    "parameters_pretrain.yml": ["pretrain.steps=10"],
}
# DVC resolves a file's interpolations with OmegaConf, which has no `globals` resolver outside
# Kedro: `-S` stops on a file holding one (edit it and run `dvc exp run`; docs/dvc.md)
GLOBALS = pytest.mark.xfail(raises=UnsupportedInterpolationType, strict=True)


def _cases():
    for name, overrides in CHANGES.items():
        marks = [GLOBALS] if "${globals:" in (BASE / name).read_text() else []
        for override in overrides:
            yield pytest.param(name, override, marks=marks, id=f"{name}:{override}")


def _changed(tree: dict, override: str) -> tuple[dict, int]:
    """``tree`` with the override's value set at its dotted key (a copy), and how many keys of
    that path it adds (``+key=value`` sets one the file lacks: each a line of its own)."""
    key, value = override.removeprefix("+").split("=", 1)
    changed, added = yaml.safe_load(yaml.safe_dump(tree)), 0
    *parents, leaf = key.split(".")
    node = changed
    for part in parents:
        added += part not in node
        node = node.setdefault(part, {})
    added += leaf not in node
    node[leaf] = yaml.safe_load(value)
    return changed, added


def test_every_parameters_file_is_checked():
    assert set(CHANGES) == {path.name for path in BASE.glob("parameters*.yml")}


@pytest.mark.parametrize(("name", "override"), _cases())
def test_set_param_changes_only_its_line(name, override, tmp_path):
    # DVC's own process has no `globals` resolver; one Kedro registered earlier in this process
    # would let OmegaConf resolve the paths here (Kedro registers it again when it next loads)
    OmegaConf.clear_resolver("globals")
    path = tmp_path / name
    shutil.copy(BASE / name, path)
    before = path.read_text().splitlines()
    apply_overrides(str(path), [override])  # what `dvc exp run -S '<path>:<override>'` runs
    after = path.read_text().splitlines()
    edits = [
        op for op in difflib.SequenceMatcher(a=before, b=after).get_opcodes() if op[0] != "equal"
    ]
    expected, added = _changed(yaml.safe_load("\n".join(before)), override)
    diff = "\n".join(difflib.unified_diff(before, after, lineterm="", n=0))
    assert len(edits) == 1, f"more than one place changed:\n{diff}"
    _, old_start, old_end, new_start, new_end = edits[0]
    assert old_end - old_start == 1 and new_end - new_start <= 1 + added, f"not one line:\n{diff}"
    assert yaml.safe_load("\n".join(after)) == expected
