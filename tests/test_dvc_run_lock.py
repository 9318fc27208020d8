"""One lock for DVC and Kedro, with real processes in a git copy of the project whose ingest
outputs exist (as a run before left them, with no DVC cache to restore them from): a ``dvc repro``
or ``dvc exp run`` started while a Kedro run holds the project lock stops before it deletes
anything and names the holder; a ``kedro run`` started while DVC holds its repo lock (between
two stages) or runs a stage is refused and writes nothing, and DVC's own stage still runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from croft_pipeline.hooks.run_lock import LOCK_FILE, held_message
from tests.dvc_harness import dvc, dvc_command, dvc_env, git_project, stage_outs
from tests.kedro_harness import REPO_ROOT, kill_run, start_kedro_run

pytestmark = pytest.mark.slow

STAGE = "ingest"  # the first stage: it runs nothing upstream
# A real Kedro run of the stage (its hooks and locks) that blocks in its first node.
BLOCKED_RUN = """
import sys
from pathlib import Path
import croft_pipeline.pipelines.ingest.nodes as nodes
from tests.kedro_harness import run_pipeline

def blocked(*args, **kwargs):
    print("blocked", flush=True)
    sys.stdin.read()

nodes.render_dataset = blocked
run_pipeline(Path(sys.argv[1]), "ingest")
"""
# DVC's repo lock, taken as DVC takes it (and holds it between the stages of `dvc repro`).
DVC_REPO_LOCK = """
import sys
from dvc.repo import Repo
with Repo(sys.argv[1]) as repo, repo.lock:
    print("blocked", flush=True)
    sys.stdin.read()
"""
# The stage command's interpreter (scripts/kedro runs $CROFT_PYTHON): waits for its stdin (DVC's)
# to close, then is the real one.
BLOCKED_STAGE = """#!/bin/sh
echo blocked
cat > /dev/null
exec "{python}" "$@"
"""


@pytest.fixture
def project(tmp_path) -> Path:
    """A git copy of the project whose ingest outputs hold bytes of an earlier run."""
    project = git_project(tmp_path / "project")
    for path, persist in stage_outs(project)[STAGE].items():
        if not persist:
            (project / path).parent.mkdir(parents=True, exist_ok=True)
            (project / path).write_bytes(f"an earlier run's {path}\n".encode())
    return project


def _data(project: Path) -> dict[str, bytes]:
    """Every file under data/ (the run lock's record aside) and its bytes."""
    return {
        str(p.relative_to(project)): p.read_bytes()
        for p in (project / "data").rglob("*")
        if p.is_file() and p.name != Path(LOCK_FILE).name
    }


def _start_blocked(command: list[str], project: Path, **env: str) -> subprocess.Popen:
    """``command`` in ``project``, once it has printed ``blocked`` (it then waits for its stdin to
    close); its stdout and stderr are one pipe."""
    process = subprocess.Popen(
        command,
        cwd=project,
        env={**dvc_env(), **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.strip() == "blocked":
            return process
    kill_run(process)
    pytest.fail(f"{' '.join(command)} ended before it blocked:\n{''.join(seen)[-3000:]}")


def _release(process: subprocess.Popen) -> tuple[int, str]:
    """Close the blocked process's stdin and wait for it: its exit status and the rest of its
    output."""
    try:
        rest, _ = process.communicate(input="", timeout=600)
    finally:
        kill_run(process)
    return process.returncode, rest


def _refused_run(project: Path, log: Path) -> str:
    """A plain ``kedro run`` of the stage, which must fail: its log."""
    run = start_kedro_run(project, STAGE, log)
    try:
        run.wait(timeout=600)
    finally:
        kill_run(run)
    assert run.returncode != 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()  # one `Error:` line (hooks.errors.RunRefused)
    return log.read_text()


@pytest.mark.parametrize("command", [["repro", STAGE], ["exp", "run", STAGE]])
def test_dvc_started_during_a_kedro_run_stops_before_deleting_and_names_the_holder(
    project, command
):
    before = _data(project)
    run = _start_blocked(
        [sys.executable, "-c", BLOCKED_RUN, str(project)],
        project,
        PYTHONPATH=os.pathsep.join([str(project / "src"), str(REPO_ROOT)]),
    )
    try:
        held = held_message(project / LOCK_FILE, (project / LOCK_FILE).read_text())
        done = subprocess.run(
            dvc_command(*command), cwd=project, env=dvc_env(), capture_output=True, text=True
        )
    finally:
        kill_run(run)  # SIGKILL, as a run may end: its DVC locks must not outlive it
    assert done.returncode != 0
    assert _data(project) == before
    assert held in done.stdout + done.stderr
    dvc(project, "status")  # DVC drops the path locks of a dead process


def test_kedro_started_while_dvc_holds_its_repo_lock_is_refused_and_writes_nothing(
    project, tmp_path
):
    before = _data(project)
    holder = _start_blocked([sys.executable, "-c", DVC_REPO_LOCK, str(project)], project)
    try:
        log = _refused_run(project, tmp_path / "kedro.log")
    finally:
        _release(holder)
    assert "DVC is running" in log and f"pid {holder.pid} holds" in log
    assert _data(project) == before


def test_kedro_started_while_dvc_runs_a_stage_is_refused_and_the_stage_still_runs(
    project, tmp_path
):
    python = tmp_path / "blocked-python"
    python.write_text(BLOCKED_STAGE.format(python=sys.executable))
    python.chmod(0o755)
    repro = _start_blocked(dvc_command("repro", STAGE), project, CROFT_PYTHON=str(python))
    try:
        before = _data(project)  # DVC has deleted its stage's outputs: it is running it
        log = _refused_run(project, tmp_path / "kedro.log")
        after = _data(project)
    finally:
        status, output = _release(repro)
    assert "DVC is running" in log and f"(PID {repro.pid})" in log
    assert after == before
    assert status == 0, output[-3000:]  # the stage DVC launched ran, and DVC committed it
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert {out["path"] for out in lock["stages"][STAGE]["outs"]} == set(stage_outs(project)[STAGE])
