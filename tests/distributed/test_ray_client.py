"""The client path: a cluster started with ``ray start --head`` (on 127.0.0.1, free ports, its own
temp dir and token) and ``kedro run`` with ``RAY_ADDRESS=ray://127.0.0.1:<client port>`` for
``embed`` and ``train`` on Ray. The driver's writes land on the driver's disk: the cache chunks
and the trained files equal the local run's, the MLflow runs are in the project's store, and the
cluster's folder (where its workers run) holds none of them. Only the processes ``ray start``
started are stopped (a bare ``ray stop`` would stop every Ray on the machine)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from tests.distributed.conftest import NO_TRACKING, free_port, own_ray_tmp, ray_or_skip
from tests.kedro_harness import (
    EMBED_CACHE,
    chunk_digests,
    clear_outputs,
    copy_project,
    finish_run,
    pin_tracking_store,
    start_kedro,
)

pytestmark = pytest.mark.slow  # a Ray cluster and a kedro subprocess: the integration tier

ray_or_skip()

TRAINED = ("data/06_models/train_summary.json", "data/06_models/adapters")
PORT_OPTIONS = (  # every port `ray start --head` opens, so that none collides with another Ray
    "--port",
    "--ray-client-server-port",
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
)


@dataclass(frozen=True)
class Head:
    folder: Path  # RAY_TMPDIR: the cluster's sessions, logs and its workers' folders
    client_port: int
    environ: dict[str, str]  # what a client needs besides RAY_ADDRESS (the token)


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """``ray start --head`` with 2 CPUs in a session of its own; afterwards its processes (those
    of that session) get SIGTERM, then SIGKILL."""
    with own_ray_tmp() as folder:
        ports = {option: free_port() for option in PORT_OPTIONS}
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        environ = {
            **os.environ,
            **auth,
            "RAY_USAGE_STATS_ENABLED": "0",
            "MLFLOW_TRACKING_URI": NO_TRACKING,  # the workers' MLflow: any call fails its task
        }
        ray = Path(sys.executable).with_name("ray")
        command = [str(ray), "start", "--head", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
        command += ["--include-dashboard=false", "--disable-usage-stats"]
        command += [f"--temp-dir={folder / 'ray'}", f"--object-store-memory={128 * 2**20}"]
        command += [f"{option}={port}" for option, port in ports.items()]
        started = subprocess.Popen(
            command,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # every process it starts shares this session id
        )
        try:
            output, _ = started.communicate(timeout=120)
            assert started.returncode == 0, output.decode()[-3000:]
            yield Head(folder, ports["--ray-client-server-port"], auth)
        finally:
            _stop_session(started.pid)


def _stop_session(session: int, grace: float = 15) -> None:
    """SIGTERM every process of ``session``, then SIGKILL those still there after ``grace`` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace
        while (left := _members(session)) and time.monotonic() < deadline:
            for pid in left:
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
            time.sleep(0.5)


def _members(session: int) -> list[int]:
    """The live processes of ``session`` (not zombies)."""
    found = []
    for entry in Path("/proc").iterdir():
        with suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit() and os.getsid(int(entry.name)) == session:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if stat[0] != "Z":
                    found.append(int(entry.name))
    return found


def test_a_ray_client_run_writes_on_the_drivers_disk(head, tiny_run, tmp_path):
    tiny_project = tiny_run.project
    project = copy_project(tiny_project, tmp_path / "project")
    for pipeline in ("embed", "train"):
        clear_outputs(project, pipeline)
    pin_tracking_store(project, "test")
    environ = {**os.environ, **head.environ, "RAY_ADDRESS": f"ray://127.0.0.1:{head.client_port}"}
    args = ["run", "--pipelines=embed,train", "--env=test"]
    args.append("--params=embed.runner=ray,train.runner=ray")
    log = tmp_path / "kedro.log"
    finish_run(start_kedro(project, args, log, environ), log, timeout=300)
    text = log.read_text()
    for runner in ("embed.runner: ", "train.runner: "):  # the runners' placement lines
        assert f"{runner}" in text and "on 1 Ray node(s)" in text, runner
    expected = tiny_run.cache_chunks  # the local run's chunks: same names and bytes
    assert chunk_digests(project / EMBED_CACHE) == expected and expected
    for path in TRAINED:
        assert _files(project / path) == _files(tiny_project / path), path
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    trained = json.loads((project / "data/06_models/training_runs.json").read_text())
    run_ids = [run_id for seeds in trained.values() for run_id in seeds.values()]
    assert run_ids and all(client.get_run(run_id).info.status == "FINISHED" for run_id in run_ids)
    written = [
        p.name for p in head.folder.rglob("*") if p.name == "mlflow.db" or "chunk-" in p.name
    ]
    assert not written  # nothing of the driver's in the cluster's folders


def _files(path: Path) -> dict[str, bytes]:
    """A file's bytes, or every file's under a folder, by relative path."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }
