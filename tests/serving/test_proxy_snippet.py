"""The nginx snippet of docs/architecture.md ("Serving"), run in front of ``mlflow models serve``:
a malformed body no longer comes back, an oversized one is refused by nginx, good requests pass.
Skipped where nginx is not installed (it is no dependency of the project)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.serving.test_rest_server import (  # noqa: F401  (server: the fixture)
    _free_port,
    _wait_until_up,
    server,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed"),
]
DOC = Path(__file__).parents[2] / "docs" / "architecture.md"
MALFORMED = b'{"inputs": [' + b"x" * (20 * 2**20)  # 20 MiB that is not JSON


def documented_snippet() -> str:
    text = DOC.read_text().split("### Serving", 1)[1]
    return re.search(r"```nginx\n(.*?)```", text, re.S).group(1)


def local_config(snippet: str, upstream: int, port: int, prefix: Path) -> str:
    """The snippet on plain HTTP at 127.0.0.1:``port``, proxying to ``upstream``, in a minimal
    nginx.conf whose files all live under ``prefix``."""
    block = snippet.replace("server 127.0.0.1:5000;", f"server 127.0.0.1:{upstream};")
    block = re.sub(r"listen 443 ssl;.*", f"listen 127.0.0.1:{port};", block)
    temp = " ".join(
        f"{kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    return (
        f"pid {prefix / 'nginx.pid'}; error_log {prefix / 'error.log'}; daemon off;\n"
        f"user {pwd.getpwuid(os.geteuid()).pw_name};\n"  # workers as this user (if root)
        "events {}\n"
        f"http {{ access_log off; {temp} uwsgi_temp_path {prefix / 'uwsgi'}; "
        f"scgi_temp_path {prefix / 'scgi'};\n{block}\n}}\n"
    )


def _post(url: str, data: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def proxy(server, tmp_path):  # noqa: F811
    """nginx with the documented snippet in front of the test server: (proxy URL, direct
    /invocations URL, nginx's folder)."""
    upstream = int(server.rsplit(":", 1)[1].split("/")[0])
    port, prefix = _free_port(), tmp_path / "nginx"
    prefix.mkdir()
    config = prefix / "nginx.conf"
    config.write_text(local_config(documented_snippet(), upstream, port, prefix))
    checked = subprocess.run(["nginx", "-t", "-c", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(["nginx", "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(process, f"http://127.0.0.1:{port}/ping", prefix / "error.log")
        yield f"http://127.0.0.1:{port}", server, prefix
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_documented_proxy_hides_mlflows_echo_and_caps_the_body(proxy, tiny_model):
    url, direct, prefix = proxy
    echoed = _post(direct, MALFORMED)
    assert echoed[0] == 400 and len(echoed[1]) > len(MALFORMED)  # MLflow quotes the whole body

    status, answer = _post(f"{url}/invocations", MALFORMED)
    assert status == 400, (answer, (prefix / "error.log").read_text())
    assert len(answer) < 1000 and b"xxxx" not in answer
    status, answer = _post(f"{url}/invocations", b"{" + b" " * (30 * 2**20) + b"}")
    assert status == 413 and len(answer) < 1000
    embedding = ",".join(str(v) for v in tiny_model.features[0].tolist())
    good = f'{{"inputs": [{{"embedding": [{embedding}]}}]}}'.encode()
    status, answer = _post(f"{url}/invocations", good)
    assert status == 200 and b"predictions" in answer
