"""Drive DVC as a user does, in a git repository made of the project's files: run ``dvc`` and
``git`` there as subprocesses (the test configuration, this interpreter for the stages)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.kedro_harness import REPO_ROOT


def dvc_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "KEDRO_ENV": "test",
        "CROFT_PYTHON": sys.executable,  # scripts/kedro: this interpreter, whatever the shell
        "COLUMNS": "1000",  # Kedro's rich traceback wraps at 80 columns otherwise
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        **extra,
    }
    env.pop("PYTHONPATH", None)  # the stage itself puts its checkout's src first
    return env


def run_checked(cwd: Path, *command: str) -> str:
    done = subprocess.run(command, cwd=cwd, env=dvc_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def dvc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def dvc(cwd: Path, *args: str) -> str:
    return run_checked(cwd, *dvc_command(*args))


def git(cwd: Path, *args: str) -> str:
    return run_checked(cwd, "git", *args)


def project_files() -> list[str]:
    """The checkout's files that git tracks or would track (not the ignored ones: data/)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in listed.stdout.splitlines() if (REPO_ROOT / line).is_file()]


def git_project(target: Path) -> Path:
    """A git repository at ``target`` (branch ``main``) holding the project's files in one
    commit, no data."""
    for name in project_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target / name)
    git(target, "init", "-q", "-b", "main")  # the branch docs/dvc.md names
    git(target, "add", "-A")
    git(target, "commit", "-qm", "baseline")
    return target


def stage_outs(project: Path) -> dict[str, dict[str, bool]]:
    """dvc.yaml's outputs: stage -> output path -> whether it is ``persist: true``."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    return {
        name: {
            path: bool(flags.get("persist"))
            for out in stage.get("outs", [])
            for path, flags in (out.items() if isinstance(out, dict) else [(out, {})])
        }
        for name, stage in stages.items()
    }
