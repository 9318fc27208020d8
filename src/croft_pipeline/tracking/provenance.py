"""What made a run, Kedro-free: the git commit (and whether the checkout was dirty), the Kedro
environment, the sha256 of the DVC-tracked data, the CLIP checkpoint, the DVC experiment, the
keys its ``--params`` overrode and the MLflow run.

One :class:`ProvenanceRecorder` per pipeline run (made by ``hooks.ProvenanceHook``) computes the
facts: git once, each file's digest again only when the file changed (a run that writes the
manifest reports the manifest it wrote). Every MLflow run is tagged with :meth:`Provenance.tags`,
registered versions carry the same tags, and the report opens with :meth:`Provenance.rows`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from croft_pipeline.common.files import sha256_file

TRACKED_DATA = (  # catalog datasets whose files DVC versions and every run names by digest
    "manifest",
    "image_features_center",
    "image_features_train_views",
    "text_features",
)
CLIP_SPEC = "clip_model_spec"  # its checkpoint_sha256 names the CLIP checkpoint
DVC_EXPERIMENT_VARIABLE = "DVC_EXP_NAME"  # set by `dvc exp run`
UNKNOWN = "unknown"
MISSING = "missing"
DEFAULT_UI = {"host": "127.0.0.1", "port": "5000"}  # `mlflow ui`'s default address


@dataclass(frozen=True)
class MlflowRun:
    """An MLflow run and the `mlflow ui` address its link assumes."""

    run_id: str
    experiment_id: str
    ui_address: str = f"http://{DEFAULT_UI['host']}:{DEFAULT_UI['port']}"

    @property
    def url(self) -> str:
        return f"{self.ui_address}/#/experiments/{self.experiment_id}/runs/{self.run_id}"


@dataclass(frozen=True)
class Provenance:
    git_commit: str
    git_dirty: str  # "true" | "false" | "unknown"
    kedro_env: str
    pipeline: str
    data: dict[str, str] = field(default_factory=dict)  # dataset -> sha256 | "missing"
    clip_checkpoint_sha256: str = UNKNOWN
    dvc_experiment: str | None = None
    mlflow: MlflowRun | None = None
    # the dotted keys the run's --params set (Kedro's runtime parameters)
    overrides: tuple[str, ...] = ()

    def experiment(self) -> str | None:
        """What makes this run an experiment, not a run of the committed configuration:
        ``DVC experiment <name>`` or ``a run with --params <keys>``; ``None`` for neither."""
        if self.dvc_experiment:
            return f"DVC experiment {self.dvc_experiment}"
        if self.overrides:
            return f"a run with --params {', '.join(self.overrides)}"
        return None

    def tags(self) -> dict[str, str]:
        """The ``croft.*`` tags of every MLflow run and registered version."""
        tags = {
            "croft.git_commit": self.git_commit,
            "croft.git_dirty": self.git_dirty,
            "croft.kedro_env": self.kedro_env,
            "croft.pipeline": self.pipeline,
            **{f"croft.data.{name}.sha256": digest for name, digest in self.data.items()},
            "croft.clip_checkpoint_sha256": self.clip_checkpoint_sha256,
        }
        if self.dvc_experiment:
            tags["croft.dvc_experiment"] = self.dvc_experiment
        if self.overrides:
            tags["croft.params_overrides"] = ", ".join(self.overrides)
        return tags

    def commit_text(self) -> str:
        """``<commit>`` with `` (dirty)`` when the checkout had uncommitted changes."""
        return self.git_commit + (" (dirty)" if self.git_dirty == "true" else "")

    def description(self) -> str:
        """One line for the pipeline's MLflow run (its description in the UI)."""
        text = f"croft-pipeline: Kedro pipeline {self.pipeline}, env {self.kedro_env}, "
        text += f"git commit {self.commit_text()}"
        return text + (f", {self.experiment()}" if self.experiment() else "")

    def rows(self) -> list[tuple[str, str]]:
        """(fact, value) in reading order, for the report's provenance box."""
        rows = [
            ("git commit", self.commit_text()),
            ("Kedro environment", self.kedro_env),
            ("pipeline", self.pipeline),
            *((f"{name} sha256", digest) for name, digest in self.data.items()),
            ("CLIP checkpoint sha256", self.clip_checkpoint_sha256),
        ]
        if self.dvc_experiment:
            rows.append(("DVC experiment", self.dvc_experiment))
        if self.overrides:
            rows.append(("--params overrides", ", ".join(self.overrides)))
        return rows


def git_state(root: str | os.PathLike) -> tuple[str, str]:
    """(commit, dirty) of the git checkout at ``root``; ``("unknown", "unknown")`` when it is not
    one or git is missing. Dirty: ``git status`` lists a change (untracked files count)."""
    try:
        commit = _git(root, "rev-parse", "HEAD").strip()
        dirty = bool(_git(root, "status", "--porcelain").strip())
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN, UNKNOWN
    return commit, str(dirty).lower()


def _git(root: str | os.PathLike, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def checkpoint_sha256(spec_path: Path | None) -> str:
    """``checkpoint_sha256`` recorded in ``clip_model_spec.json`` (pretrain hashed it once)."""
    if spec_path is None or not spec_path.is_file():
        return UNKNOWN
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return UNKNOWN
    return str(spec.get("checkpoint_sha256") or f"none (pretrained: {spec.get('pretrained')})")


class ProvenanceRecorder:
    """The facts of one run: git and the environment once, file digests as the files are now."""

    def __init__(
        self,
        project_dir: str | os.PathLike,
        env: str,
        pipeline: str,
        files: Mapping[str, str | os.PathLike],
        clip_spec: str | os.PathLike | None = None,
        mlflow_run: MlflowRun | None = None,
        runtime_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.env, self.pipeline, self.mlflow_run = env, pipeline, mlflow_run
        self.overrides = override_keys(runtime_params or {})
        self.files = {name: Path(path) for name, path in files.items()}
        self.clip_spec = Path(clip_spec) if clip_spec is not None else None
        self.git = git_state(project_dir)
        self.dvc_experiment = os.environ.get(DVC_EXPERIMENT_VARIABLE) or None
        self._digests: dict[Path, tuple[tuple[int, int], str]] = {}

    def current(self) -> Provenance:
        return Provenance(
            git_commit=self.git[0],
            git_dirty=self.git[1],
            kedro_env=self.env,
            pipeline=self.pipeline,
            data={name: self._digest(path) for name, path in self.files.items()},
            clip_checkpoint_sha256=checkpoint_sha256(self.clip_spec),
            dvc_experiment=self.dvc_experiment,
            mlflow=self.mlflow_run,
            overrides=self.overrides,
        )

    def _digest(self, path: Path) -> str:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return MISSING
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._digests.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, sha256_file(path))
            self._digests[path] = cached
        return cached[1]


def recorder_for(
    project_dir: str | os.PathLike,
    env: str,
    pipeline: str,
    catalog: Mapping[str, Mapping[str, Any]],
    mlflow_run: MlflowRun | None = None,
    runtime_params: Mapping[str, Any] | None = None,
) -> ProvenanceRecorder:
    """A recorder whose files are the catalog entries' (``filepath``, relative to the project)."""
    root = Path(project_dir)

    def path_of(name: str) -> Path | None:
        entry = catalog.get(name) or {}
        return root / entry["filepath"] if "filepath" in entry else None

    files = {name: path for name in TRACKED_DATA if (path := path_of(name)) is not None}
    return ProvenanceRecorder(
        root, env, pipeline, files, path_of(CLIP_SPEC), mlflow_run, runtime_params
    )


def override_keys(runtime_params: Mapping[str, Any], parent: str = "") -> tuple[str, ...]:
    """The dotted keys of Kedro's runtime parameters (``--params a.b=1,c=2``: ``a.b``, ``c``)."""
    keys: list[str] = []
    for key, value in runtime_params.items():
        name = f"{parent}.{key}" if parent else str(key)
        keys += override_keys(value, name) if isinstance(value, Mapping) and value else [name]
    return tuple(sorted(keys))


def ui_address(ui: Mapping[str, Any] | None) -> str:
    """``http://host:port`` of `mlflow ui` from kedro-mlflow's ``ui`` block (mlflow.yml)."""
    ui = {**DEFAULT_UI, **(ui or {})}
    return f"http://{ui['host']}:{ui['port']}"
