"""The served model behind MLflow's real REST server (``mlflow models serve``, local env): good
requests return the in-process predictions; refused ones a 400 whose message is one line naming
the row and the rule, never a stack trace, and paths outside the allowed roots are not read."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from croft_pipeline.publishing.registry import log_and_register

pytestmark = pytest.mark.slow
MAX_INPUT_BYTES = 4096  # a small cap, set in the served model's config (the tiny PNGs are < 1 KB)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(process: subprocess.Popen, url: str, log: Path) -> None:
    while process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"mlflow models serve exited with {process.returncode}:\n{log.read_text()}")


@pytest.fixture
def server(tiny_model, mlflow_store, tmp_path):
    """``mlflow models serve`` of the tiny model on 127.0.0.1; paths allowed in its image folder."""
    artifacts = tiny_model.write_bundle(tmp_path / "bundle")
    folder = str(tiny_model.images[0].parent.resolve())
    config = {"allowed_roots": [folder], "max_input_bytes": MAX_INPUT_BYTES}
    log_and_register(artifacts, "croft-clip-rest", ["champion"], model_config=config)
    port, log = _free_port(), tmp_path / "server.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_store,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # uvicorn
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m"]
    command += ["models:/croft-clip-rest@champion", "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_up(process, f"http://127.0.0.1:{port}/ping", log)
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _refused(url: str, body: dict) -> str:
    """The message of a 400 that is one line with no stack trace."""
    status, answer = _post(url, body)
    assert status == 400, answer
    assert set(answer) == {"error_code", "message"}, answer
    assert "\n" not in answer["message"] and "Traceback" not in answer["message"]
    return answer["message"]


def test_rest_server_serves_good_requests_and_refuses_bad_ones_in_one_line(
    server, tiny_model, tmp_path
):
    image = tiny_model.images[0]
    embedding = tiny_model.features[0].tolist()
    good = {
        "embedding": {"dataframe_split": {"columns": ["embedding"], "data": [[embedding]]}},
        "base64 image": {
            "dataframe_records": [{"image": base64.b64encode(image.read_bytes()).decode()}]
        },
        "allowed path": {"dataframe_records": [{"path": str(image)}]},
        "inputs, records": {"inputs": [{"embedding": embedding}]},
        "inputs, columns": {"inputs": {"embedding": [embedding]}},
        "instances": {"instances": [{"embedding": embedding}]},
        "inputs, path columns": {"inputs": {"path": [str(image)]}},
    }
    answers = {name: _post(server, body) for name, body in good.items()}
    assert {name: status for name, (status, _) in answers.items()} == dict.fromkeys(good, 200)
    first = {row["class_name"] for _, answer in answers.values() for row in answer["predictions"]}
    assert len(first) == 1  # one image, one answer in every format

    secret = tmp_path / "secret.png"  # exists, readable, outside the allowed root
    secret.write_bytes(image.read_bytes())
    outside = {str(secret), str(tmp_path / "missing.png"), f"{image.parent}/../{secret.name}"}
    messages = {path: _refused(server, {"dataframe_records": [{"path": path}]}) for path in outside}
    for path, message in messages.items():
        assert message == (
            f"row 0: path {path!r} is outside the allowed roots (model config allowed_roots)"
        )
    missing_inside = str(image.parent / "missing.png")
    assert "cannot be read" in _refused(server, {"dataframe_records": [{"path": missing_inside}]})

    oversized = base64.b64encode(b"\0" * (4 * MAX_INPUT_BYTES)).decode()
    assert _refused(
        server,
        {
            "dataframe_records": [
                {"image": base64.b64encode(image.read_bytes()).decode()},
                {"image": oversized},
            ]
        },
    ).startswith("row 1: image is 21848 base64 characters, more than the")
    assert _refused(server, {"inputs": [[0.5] * len(embedding)]}).startswith(
        "model input must have exactly one of the columns"
    )
    columns_of_images = {"inputs": {"image": [base64.b64encode(image.read_bytes()).decode()] * 2}}
    assert _refused(server, columns_of_images).startswith(
        "row 0: image must be bytes or base64 text, got list; send one record per image, e.g."
    )
    assert _refused(server, {"dataframe_records": [{"embedding": ["a", "b"]}]}) == (
        f"row 0: embedding is not numeric (send a list of {len(embedding)} numbers)"
    )
    assert _refused(server, {"dataframe_records": [{"embedding": embedding[:-1]}]}).startswith(
        f"row 0: embedding has shape ({len(embedding) - 1},)"
    )
