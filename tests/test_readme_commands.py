"""Every command of the README's "Everyday commands", verbatim, after a run: in a copy of the
tiny run (``KEDRO_ENV=test``, so the Kedro commands run the tiny configuration), once where the
gates failed (no ``champion``: the console serves ``candidate`` and says so) and once where they
passed. Each outcome is forced by the gates parameter, not left to the data."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.kedro_harness import REPO_ROOT, copy_with_store, pin_tracking_store, run_pipeline

pytestmark = pytest.mark.slow

README = REPO_ROOT / "README.md"
SECTION = "## Everyday commands"
IMPOSSIBLE = {"name": "impossible", "shift": "id", "metric": "accuracy", "op": ">", "value": 1.0}
GATES = {"fail": [IMPOSSIBLE], "pass": []}  # evaluate.gates.comparisons
SERVERS = ("mlflow ui",)  # commands that serve until stopped: each must answer on its port


def readme_commands() -> list[str]:
    """The lines of the bash blocks in the README's "Everyday commands" section (a line ending
    in a backslash joined with the next), comments kept: bash reads them as a user's shell
    would."""
    text = README.read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_section_has_the_commands_a_user_runs_next():
    commands = readme_commands()
    assert any(c.startswith("croft-pipeline predict") for c in commands)
    assert any(c.startswith("kedro run") for c in commands)


@pytest.fixture(scope="module", params=sorted(GATES))
def after_run(request, tiny_project, tmp_path_factory) -> tuple[str, Path]:
    """A copy of the tiny run whose last evaluate run was made with the gates forced to
    ``request.param``, as a plain run of its configuration (the gates in its files)."""
    outcome = request.param
    project = copy_with_store(tiny_project, tmp_path_factory.mktemp(outcome) / "project")
    path = project / "conf" / "test" / "parameters_evaluate.yml"
    params = yaml.safe_load(path.read_text()) or {}
    params.setdefault("evaluate", {})["gates"] = {"comparisons": GATES[outcome]}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    pin_tracking_store(project, "test")
    run_pipeline(project, "evaluate", env="test", from_nodes=["render_report"])
    return outcome, project


def _environ(port: int) -> dict[str, str]:
    """The user's shell after ``source .venv/bin/activate``, on the tiny configuration; a free
    port for the servers (MLflow's CLI reads ``MLFLOW_PORT``)."""
    environ = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO_ROOT / "src"),
        "KEDRO_ENV": "test",
        "MLFLOW_PORT": str(port),
        "COLUMNS": "1000",
    }
    environ.pop("MLFLOW_TRACKING_URI", None)  # the README's commands find the project's store
    environ.pop("MLFLOW_REGISTRY_URI", None)
    return environ


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(command: str, project: Path, environ: dict[str, str], log: Path) -> None:
    """Start a serving command, wait until its port answers HTTP, stop its process group."""
    url = f"http://127.0.0.1:{environ['MLFLOW_PORT']}/"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=project, env=environ, stdout=out, stderr=out,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, f"{command!r} ended:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    assert answer.status == 200
                    return
            except OSError:
                time.sleep(1)
        pytest.fail(f"{command!r} did not answer on {url} in 120 s:\n{log.read_text()}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def test_every_everyday_command_runs_as_written(after_run, tmp_path):
    outcome, project = after_run
    environ = _environ(_free_port())
    for i, command in enumerate(readme_commands()):
        if command.startswith(SERVERS):
            _serve(command, project, environ, tmp_path / f"server{i}.log")
            continue
        done = subprocess.run(
            ["bash", "-c", command], cwd=project, env=environ, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{command!r} failed ({outcome}):\n{output}"
        assert "Traceback" not in output and "Warning" not in output, (command, output)
        if command.startswith("croft-pipeline info"):
            served = "@champion" if outcome == "pass" else "@candidate"
            assert f"models:/croft-clip{served}" in output, output
            assert ("is champion yet" in output) == (outcome == "fail"), output
    predictions = pd.read_csv(project / "predictions.csv")
    assert len(predictions) > 0 and predictions["error"].isna().all()
