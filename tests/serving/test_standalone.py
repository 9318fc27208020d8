"""The registered model stands alone: copied out of the store, it loads and predicts in a fresh
interpreter that cannot import the project (no source, no install), from the package copy it
carries, and its requirements pin every package that code imports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from croft_pipeline.publishing.registry import log_and_register
from croft_pipeline.serving.pyfunc import load_in_process

pytestmark = (
    pytest.mark.slow
)  # a fresh interpreter loads the registered model: the integration tier

PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$")

# Runs with `python -I` (no PYTHONPATH, no cwd on the path). sys.path entries that provide the
# project (its source folder, which the editable install's .pth adds) are dropped first.
FRESH_INTERPRETER = r"""
import ast, json, sys
from importlib.metadata import packages_distributions
from pathlib import Path

sys.path = [p for p in sys.path if not (Path(p) / "croft_pipeline").exists()]
try:
    import croft_pipeline
except ImportError:
    pass
else:
    raise SystemExit(f"croft_pipeline is importable before loading: {croft_pipeline.__file__}")

import mlflow.pyfunc
import pandas as pd

model_dir, folder = sys.argv[1:3]
model = mlflow.pyfunc.load_model(model_dir, model_config={"allowed_roots": [folder]})
paths = sorted(str(p) for p in Path(folder).glob("*.png"))
predicted = model.predict(pd.DataFrame({"path": paths}))

files = {m.__file__ for n, m in sys.modules.items() if n.startswith("croft_pipeline") and m.__file__}
imported = set()
for file in files:
    for node in ast.walk(ast.parse(Path(file).read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
third_party = imported - set(sys.stdlib_module_names) - {"croft_pipeline"}
distributions = packages_distributions()
print(json.dumps({
    "paths": paths,
    "predicted": predicted.to_dict("list"),
    "project_files": sorted(files),
    "imports": {name: distributions.get(name, []) for name in sorted(third_party)},
}))
"""


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_registered_model_predicts_in_a_fresh_interpreter_without_the_project(
    tiny_model, mlflow_store, tmp_path
):
    artifacts = tiny_model.write_bundle(
        tmp_path / "bundle", knn_k=2, threshold=tiny_model.clear_threshold
    )
    registered = log_and_register(artifacts, "croft-clip-alone", aliases=["champion"])
    model_dir = Path(tmp_path / "copied")
    shutil.copytree(mlflow.artifacts.download_artifacts(registered["model_uri"]), model_dir)
    folder = str(tiny_model.images[0].parent.resolve())

    run = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_INTERPRETER, str(model_dir), folder],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    alone = json.loads(run.stdout.strip().splitlines()[-1])

    code = (model_dir / "code" / "croft_pipeline").resolve()
    assert alone["project_files"] and all(
        Path(f).is_relative_to(code) for f in alone["project_files"]
    )
    shipped = {path.relative_to(code).parts[0] for path in code.rglob("*.py")}
    assert {"serving", "methods", "ood", "clip"} <= shipped  # what the served model imports
    assert not shipped & {"pipelines", "hooks", "publishing", "pretraining", "tools", "settings.py"}
    in_process = load_in_process(
        registered["model_uri"], model_config={"allowed_roots": [folder]}
    ).predict(pd.DataFrame({"path": alone["paths"]}))
    predicted = pd.DataFrame(alone["predicted"])
    assert list(predicted.columns) == list(in_process.columns)
    assert "knn" in predicted.columns  # the bank travelled as an artifact
    assert predicted["label"].tolist() == in_process["label"].tolist()
    assert predicted["is_unknown"].tolist() == in_process["is_unknown"].tolist()
    assert 0 < predicted["is_unknown"].sum() < len(predicted)
    for column in ("score", "energy", "knn"):
        np.testing.assert_allclose(predicted[column], in_process[column], rtol=1e-6)

    requirements = (model_dir / "requirements.txt").read_text().split()
    assert requirements and all(PIN.match(line) for line in requirements), requirements
    pinned = {_normalized(line.split("==")[0]) for line in requirements}
    unpinned = {
        module: distributions
        for module, distributions in alone["imports"].items()
        if not pinned & {_normalized(d) for d in distributions}
    }
    assert not unpinned, f"imported by the served code but not pinned: {unpinned}"
    assert "croft-pipeline" not in pinned  # the project travels as code, not as a requirement

    python_env = yaml.safe_load((model_dir / "python_env.yaml").read_text())
    assert python_env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert all(PIN.match(line) for line in python_env["build_dependencies"])
