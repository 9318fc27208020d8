"""dvc.yaml's code deps cover every project module a stage runs (the lineage DVC promises)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from croft_pipeline.pipeline_registry import PIPELINE_ORDER, register_pipelines
from croft_pipeline.tools.code_deps import (
    PACKAGE,
    RESOURCES,
    import_closure,
    module_file,
    node_modules,
)

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PACKAGE_DIR = ROOT / "src" / PACKAGE


def _covered(path: Path, deps: list[str]) -> bool:
    relative = path.resolve().relative_to(ROOT).as_posix()
    return any(relative == dep or relative.startswith(f"{dep}/") for dep in deps)


def _loaded_modules(modules: set[str]) -> list[str]:
    """Import ``modules`` in a fresh interpreter and list the project modules that got loaded:
    what really runs, found by the interpreter, not by the syntax-tree walk under test."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {sorted(modules)!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == {PACKAGE!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.slow  # a Kedro run of each stage in a subprocess
@pytest.mark.parametrize("name", PIPELINE_ORDER)
def test_every_module_a_stage_imports_is_a_dep(name):
    pipeline = register_pipelines()[name]
    roots = {*node_modules(pipeline), f"{PACKAGE}.pipelines.{name}.pipeline"}
    deps = STAGES[name]["deps"]
    loaded = _loaded_modules(roots)
    assert f"{PACKAGE}.pipelines.{name}.nodes" in loaded
    missing = [m for m in loaded if (f := module_file(m)) and not _covered(f, deps)]
    assert not missing, f"stage {name}: modules it runs but dvc.yaml does not list: {missing}"
    # the walk also sees imports inside functions, which importing alone does not run
    assert set(loaded) <= import_closure(roots)


def test_function_level_imports_are_followed(tmp_path, monkeypatch):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text("def f():\n    from . import b\n    return b\n")
    (package / "sub" / "b.py").write_text("from croft_pipeline.sub.c import VALUE\n")
    (package / "sub" / "c.py").write_text("VALUE = 1\n")
    (package / "sub" / "unused.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
        monkeypatch.delitem(sys.modules, name)
    assert import_closure([f"{PACKAGE}.sub.a"]) == {
        PACKAGE,
        f"{PACKAGE}.sub",
        f"{PACKAGE}.sub.a",
        f"{PACKAGE}.sub.b",
        f"{PACKAGE}.sub.c",
    }


def test_package_data_read_by_path_is_declared_and_exists():
    """Files code reads by path are not in the import graph: each must be claimed in RESOURCES
    by the module that reads it, or a change to it would not rerun the stage."""
    claimed = {PACKAGE_DIR / r for resources in RESOURCES.values() for r in resources}
    assert all(path.exists() for path in claimed), "a RESOURCES entry names a missing file"
    data_files = {
        path
        for path in PACKAGE_DIR.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"}
    }
    unclaimed = {p for p in data_files if not any(p == c or c in p.parents for c in claimed)}
    assert not unclaimed, f"package files no RESOURCES entry claims: {sorted(map(str, unclaimed))}"


def test_a_change_to_the_image_decoder_makes_embed_stale():
    """The defect this replaced: embed decodes images through croft_pipeline.data but did not
    depend on it, so DVC served features computed by an old decoder."""
    decoder = PACKAGE_DIR / "data" / "images.py"
    for stage in ("pretrain", "embed", "evaluate"):
        assert _covered(decoder, STAGES[stage]["deps"]), stage
    assert not _covered(decoder, STAGES["train"]["deps"])  # train reads cached features only
